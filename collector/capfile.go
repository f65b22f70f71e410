// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Format is the capture file format of a series.
type Format int

const (
	// FormatPcapng writes pcapng: a section header naming xmirror and the
	// host, one interface block per mirror source and nanosecond timestamps.
	FormatPcapng Format = iota
	// FormatPcap writes classic pcap with the nanosecond magic 0xa1b23c4d.
	FormatPcap
)

// ParseFormat reads "pcapng" or "pcap".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "pcapng", "":
		return FormatPcapng, nil
	case "pcap":
		return FormatPcap, nil
	}
	return 0, fmt.Errorf("format %q is not pcap or pcapng", s)
}

func (f Format) String() string {
	if f == FormatPcap {
		return "pcap"
	}
	return "pcapng"
}

// Ext is the file name extension, with the dot.
func (f Format) Ext() string { return "." + f.String() }

// Capture file constants (pcap: tcpdump.org/manpages/pcap-savefile.5;
// pcapng: draft-ietf-opsawg-pcapng).
const (
	linkTypeEthernet = 1
	// snapLen is the largest frame the files declare; inner frames are
	// bounded by the receive buffer, far below it.
	snapLen = 262144

	pcapMagicNanos   = 0xa1b23c4d
	pcapHeaderLen    = 24
	pcapRecHeaderLen = 16

	ngBlockSHB       = 0x0A0D0D0A
	ngBlockIDB       = 0x00000001
	ngBlockEPB       = 0x00000006
	ngBlockISB       = 0x00000005
	ngByteOrderMagic = 0x1A2B3C4D
	ngEPBOverhead    = 32 // block header, fields and trailing length

	ngOptEnd         = 0
	ngOptComment     = 1
	ngOptSHBHardware = 2
	ngOptSHBOS       = 3
	ngOptSHBUserAppl = 4
	ngOptIfName      = 2
	ngOptIfDesc      = 3
	ngOptIfTsresol   = 9
	ngOptISBStart    = 2
	ngOptISBEnd      = 3
	ngOptISBIfRecv   = 4
	ngOptISBIfDrop   = 5
	ngOptEPBFlags    = 2
)

var le = binary.LittleEndian

func pad4(n int) int { return (n + 3) &^ 3 }

// appendPcapHeader appends the classic pcap file header.
func appendPcapHeader(b []byte) []byte {
	b = le.AppendUint32(b, pcapMagicNanos)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0) // thiszone: timestamps are UTC
	b = le.AppendUint32(b, 0) // sigfigs
	b = le.AppendUint32(b, snapLen)
	return le.AppendUint32(b, linkTypeEthernet)
}

// appendPcapRecord appends one packet record with a nanosecond timestamp.
func appendPcapRecord(b []byte, tsNanos int64, data []byte, origLen int) []byte {
	b = le.AppendUint32(b, uint32(tsNanos/1e9))
	b = le.AppendUint32(b, uint32(tsNanos%1e9))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(origLen))
	return append(b, data...)
}

func pcapRecordLen(data []byte) int { return pcapRecHeaderLen + len(data) }

type ngOption struct {
	code uint16
	val  []byte
}

func ngOptionsLen(opts []ngOption) int {
	n := 4 // opt_endofopt
	for _, o := range opts {
		n += 4 + pad4(len(o.val))
	}
	return n
}

func appendNgOptions(b []byte, opts []ngOption) []byte {
	for _, o := range opts {
		b = le.AppendUint16(b, o.code)
		b = le.AppendUint16(b, uint16(len(o.val)))
		b = append(b, o.val...)
		for i := len(o.val); i < pad4(len(o.val)); i++ {
			b = append(b, 0)
		}
	}
	b = le.AppendUint16(b, ngOptEnd)
	return le.AppendUint16(b, 0)
}

// sectionInfo is what the pcapng section header says about the capture.
type sectionInfo struct {
	Hardware, OS, Application, Comment string
}

// appendNgSHB appends a pcapng section header block (little endian, section
// length unknown so that readers do not rely on it).
func appendNgSHB(b []byte, si sectionInfo) []byte {
	var opts []ngOption
	for _, o := range []ngOption{
		{ngOptSHBHardware, []byte(si.Hardware)},
		{ngOptSHBOS, []byte(si.OS)},
		{ngOptSHBUserAppl, []byte(si.Application)},
		{ngOptComment, []byte(si.Comment)},
	} {
		if len(o.val) > 0 && len(o.val) < 0xffff {
			opts = append(opts, o)
		}
	}
	total := 28 + ngOptionsLen(opts)
	b = le.AppendUint32(b, ngBlockSHB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, ngByteOrderMagic)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, 0xFFFFFFFFFFFFFFFF)
	b = appendNgOptions(b, opts)
	return le.AppendUint32(b, uint32(total))
}

// appendNgIDB appends an interface description block: Ethernet, nanosecond
// timestamps (if_tsresol 9), named after the mirror source; snap is the
// session's packet length (0: whole frames).
func appendNgIDB(b []byte, name, desc string, snap int) []byte {
	if snap <= 0 || snap > snapLen {
		snap = snapLen
	}
	opts := []ngOption{
		{ngOptIfName, []byte(name)},
		{ngOptIfDesc, []byte(desc)},
		{ngOptIfTsresol, []byte{9}},
	}
	total := 20 + ngOptionsLen(opts)
	b = le.AppendUint32(b, ngBlockIDB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint16(b, linkTypeEthernet)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, uint32(snap))
	b = appendNgOptions(b, opts)
	return le.AppendUint32(b, uint32(total))
}

// ngISBLen is the size of the interface statistics block appendNgISB writes.
const ngISBLen = 20 + 4*12 + 4 + 4

// appendNgISB appends an interface statistics block for interface ifID:
// the packets received from it and dropped, counted since the collector
// started (as dumpcap counts), between start and end (unix nanoseconds).
func appendNgISB(b []byte, ifID uint32, start, end int64, recv, drop uint64) []byte {
	u64 := func(v uint64) []byte { return le.AppendUint64(nil, v) }
	ts := func(v int64) []byte { return le.AppendUint32(le.AppendUint32(nil, uint32(uint64(v)>>32)), uint32(v)) }
	opts := []ngOption{
		{ngOptISBStart, ts(start)},
		{ngOptISBEnd, ts(end)},
		{ngOptISBIfRecv, u64(recv)},
		{ngOptISBIfDrop, u64(drop)},
	}
	b = le.AppendUint32(b, ngBlockISB)
	b = le.AppendUint32(b, ngISBLen)
	b = le.AppendUint32(b, ifID)
	b = le.AppendUint32(b, uint32(uint64(end)>>32))
	b = le.AppendUint32(b, uint32(end))
	b = appendNgOptions(b, opts)
	return le.AppendUint32(b, ngISBLen)
}

func ngEPBLen(data []byte, m *meta) int { return ngEPBOverhead + pad4(len(data)) + ngEPBOptionsLen(m) }

// ngEPBOptionsLen is the bytes of the block's options: epb_flags and
// opt_comment when the packet has them, then opt_endofopt; none at all for
// a packet without metadata (VXLAN), whose block stays as it always was.
func ngEPBOptionsLen(m *meta) int {
	if m == nil || (m.flags == 0 && len(m.comment) == 0) {
		return 0
	}
	n := 4 // opt_endofopt
	if m.flags != 0 {
		n += 8
	}
	if c := commentLen(m); c > 0 {
		n += 4 + pad4(c)
	}
	return n
}

// commentLen bounds a comment to what an option length holds.
func commentLen(m *meta) int { return min(len(m.comment), 0xfffc) }

// appendNgEPB appends an enhanced packet block for interface ifID, with the
// packet's metadata as options (m may be nil).
func appendNgEPB(b []byte, ifID uint32, tsNanos int64, data []byte, origLen int, m *meta) []byte {
	total := ngEPBLen(data, m)
	ts := uint64(tsNanos)
	b = le.AppendUint32(b, ngBlockEPB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, ifID)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(origLen))
	b = append(b, data...)
	for i := len(data); i < pad4(len(data)); i++ {
		b = append(b, 0)
	}
	if ngEPBOptionsLen(m) > 0 {
		b = appendEPBOptions(b, m)
	}
	return le.AppendUint32(b, uint32(total))
}

// appendEPBOptions appends epb_flags, opt_comment and opt_endofopt.
func appendEPBOptions(b []byte, m *meta) []byte {
	if m.flags != 0 {
		b = le.AppendUint16(b, ngOptEPBFlags)
		b = le.AppendUint16(b, 4)
		b = le.AppendUint32(b, m.flags)
	}
	if n := commentLen(m); n > 0 {
		b = le.AppendUint16(b, ngOptComment)
		b = le.AppendUint16(b, uint16(n))
		b = append(b, m.comment[:n]...)
		for i := n; i < pad4(n); i++ {
			b = append(b, 0)
		}
	}
	b = le.AppendUint16(b, ngOptEnd)
	return le.AppendUint16(b, 0)
}

// countPackets counts the packets in whole blocks or records (data as
// validPrefix leaves it).
func countPackets(data []byte, f Format) int {
	n := 0
	if f == FormatPcap {
		for off := pcapHeaderLen; len(data)-off >= pcapRecHeaderLen; n++ {
			off += pcapRecHeaderLen + int(le.Uint32(data[off+8:]))
		}
		return n
	}
	for off := 0; len(data)-off >= 12; off += int(le.Uint32(data[off+4:])) {
		if le.Uint32(data[off:]) == ngBlockEPB {
			n++
		}
		if le.Uint32(data[off+4:]) < 12 {
			break
		}
	}
	return n
}

// validPrefix walks a capture file and returns the length of its longest
// prefix made of whole, well-formed blocks (pcapng) or records (pcap). A file
// cut by a crash in the middle of a write is repaired by truncating it there.
// Anything unrecognised yields 0.
func validPrefix(data []byte, f Format) int {
	n, _, _ := scanCapture(bytes.NewReader(data), f)
	return int(n)
}

// scanCapture is validPrefix over a reader, streamed (a .part file left by a
// crash may be as large as rotate.size, a gigabyte): it returns the length
// of the longest valid prefix and the packets in it, or the error that
// stopped reading (then the prefix is not to be cut at).
func scanCapture(rd io.Reader, f Format) (valid int64, packets int, err error) {
	er := &readError{r: rd}
	valid, packets = scanBlocks(bufio.NewReaderSize(er, 64<<10), f)
	return valid, packets, er.err
}

// readError remembers the first error other than the end of its reader.
type readError struct {
	r   io.Reader
	err error
}

func (e *readError) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

func scanBlocks(r *bufio.Reader, f Format) (valid int64, packets int) {
	if f == FormatPcap {
		hdr, _ := r.Peek(pcapHeaderLen)
		if len(hdr) < pcapHeaderLen || le.Uint32(hdr) != pcapMagicNanos {
			return 0, 0
		}
		_, _ = r.Discard(pcapHeaderLen)
		valid = pcapHeaderLen
		for {
			rec, _ := r.Peek(pcapRecHeaderLen)
			if len(rec) < pcapRecHeaderLen {
				return valid, packets
			}
			incl := int(le.Uint32(rec[8:]))
			if incl > snapLen {
				return valid, packets
			}
			if n, _ := r.Discard(pcapRecHeaderLen + incl); n < pcapRecHeaderLen+incl {
				return valid, packets
			}
			valid += int64(pcapRecHeaderLen + incl)
			packets++
		}
	}
	var trailer [4]byte
	for {
		hdr, _ := r.Peek(12)
		if len(hdr) < 12 {
			return valid, packets
		}
		typ := le.Uint32(hdr)
		n := int(le.Uint32(hdr[4:]))
		if valid == 0 && (typ != ngBlockSHB || le.Uint32(hdr[8:]) != ngByteOrderMagic) {
			return 0, 0
		}
		if n < 12 || n%4 != 0 {
			return valid, packets
		}
		if d, _ := r.Discard(n - 4); d < n-4 {
			return valid, packets
		}
		if _, err := io.ReadFull(r, trailer[:]); err != nil || int(le.Uint32(trailer[:])) != n {
			return valid, packets
		}
		valid += int64(n)
		if typ == ngBlockEPB {
			packets++
		}
	}
}
