// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xmirror/xmirror/config"
)

// DefaultFileName is the file name template: today's session-and-time
// names with the collector's host name, so that files gathered from several
// collectors never collide.
const DefaultFileName = config.DefaultFileName

// fileTimeLayout is the UTC start time in file names.
const fileTimeLayout = "20060102T150405Z"

// gzExt is appended to a capture file's name when it is compressed.
const gzExt = ".gz"

// fileNamer turns the file name template into the names of one session's
// files and recognises them again (for retention), including their
// compressed form.
type fileNamer struct {
	prefix, suffix string         // template around {time}, placeholders filled
	ext            string         // ".pcapng" or ".pcap"
	re             *regexp.Regexp // matches prefix TIME [-SEQ] suffix .pcap[ng] [.gz]
}

// CheckFileName validates a file name template: config.CheckFileName,
// which `xmirror check` applies to collector.file_name, so that the two
// refuse the same templates.
func CheckFileName(tmpl string) error {
	if err := config.CheckFileName(tmpl); err != nil {
		return fmt.Errorf("file name %w", err)
	}
	return nil
}

// newFileNamer fills the template for one session: {vni} and {id} are its
// id (the VNI, ERSPAN session id or GRE key), {protocol} its tunnel. The
// files it recognises may have any id and either format: retention also
// applies to a session's files from earlier runs.
func newFileNamer(tmpl, session, host string, key Key, ext string) fileNamer {
	before, after, _ := strings.Cut(tmpl, "{time}")
	id := strconv.FormatUint(uint64(key.ID), 10)
	fill := strings.NewReplacer("{session}", session, "{host}", host, "{vni}", id, "{id}", id, "{protocol}", key.Proto.String())
	n := fileNamer{prefix: fill.Replace(before), suffix: fill.Replace(after), ext: ext}
	quote := func(s string) string {
		q := regexp.QuoteMeta(strings.NewReplacer("{session}", session, "{host}", host).Replace(s))
		q = strings.ReplaceAll(q, regexp.QuoteMeta("{protocol}"), `[a-z]+`)
		q = strings.ReplaceAll(q, regexp.QuoteMeta("{id}"), `\d+`)
		return strings.ReplaceAll(q, regexp.QuoteMeta("{vni}"), `\d+`)
	}
	n.re = regexp.MustCompile("^" + quote(before) + `(\d{8}T\d{6}Z)(?:-(\d+))?` + quote(after) + `\.(?:pcapng|pcap)(?:\.gz)?$`)
	return n
}

// name is the file name for start time t and sequence number seq (files
// that start within one second are numbered from 1).
func (n fileNamer) name(t time.Time, seq int) string {
	ts := t.UTC().Format(fileTimeLayout)
	if seq > 0 {
		ts += "-" + strconv.Itoa(seq)
	}
	return n.prefix + ts + n.suffix + n.ext
}

// key returns a sortable key (start time, then sequence) of a closed file
// of this series, or false when the name is not one.
func (n fileNamer) key(name string) (string, bool) {
	m := n.re.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	seq := 0
	if m[2] != "" {
		var err error
		if seq, err = strconv.Atoi(m[2]); err != nil {
			return "", false
		}
	}
	return fmt.Sprintf("%s-%09d", m[1], seq), true
}

// namer is the file namer of a session.
func (c *Collector) namer(session string, key Key) fileNamer {
	return newFileNamer(c.opts.FileName, session, c.opts.Host, key, c.opts.Format.Ext())
}

// maxFileName is the longest file name (NAME_MAX) of ext4, XFS, tmpfs.
const maxFileName = 255

// longestName is the longest name a file of the namer takes on disk: a
// sequence number, compressed, under its temporary name while compressed.
func (n fileNamer) longestName() string {
	return "." + n.name(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 99999) + gzExt + ".part"
}

// checkNameLengths reports the first configured session whose file names
// would pass maxFileName: its files could never be created.
func (c *Collector) checkNameLengths(named map[Key]Session) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, key := range c.names {
		if _, ok := named[key]; !ok {
			continue
		}
		if l := c.namer(name, key).longestName(); len(l) > maxFileName {
			return fmt.Errorf("session %s: its capture files' names (with host, sequence number and temporary suffixes) run to %d bytes, over the %d a file name may have: shorten the session's name or collector.file_name",
				name, len(l), maxFileName)
		}
	}
	return nil
}
