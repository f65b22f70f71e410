// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// helperSince is the Linux release that brought each helper the parts'
// objects call (include/uapi/linux/bpf.h, bpf-helpers(7)).
var helperSince = map[asm.BuiltinFunc]Version{
	asm.FnMapLookupElem:      {3, 18},
	asm.FnMapUpdateElem:      {3, 18},
	asm.FnMapDeleteElem:      {3, 18},
	asm.FnKtimeGetNs:         {4, 1},
	asm.FnGetPrandomU32:      {4, 1},
	asm.FnGetSmpProcessorId:  {4, 1},
	asm.FnSkbStoreBytes:      {4, 1},
	asm.FnL3CsumReplace:      {4, 1},
	asm.FnL4CsumReplace:      {4, 1},
	asm.FnCloneRedirect:      {4, 2},
	asm.FnSkbGetTunnelKey:    {4, 3},
	asm.FnSkbSetTunnelKey:    {4, 3},
	asm.FnRedirect:           {4, 4},
	asm.FnPerfEventOutput:    {4, 4},
	asm.FnSkbLoadBytes:       {4, 5},
	asm.FnCsumDiff:           {4, 6},
	asm.FnSkbChangeTail:      {4, 9},
	asm.FnSkbPullData:        {4, 9},
	asm.FnCsumUpdate:         {4, 9},
	asm.FnSkbChangeHead:      {4, 10},
	asm.FnXdpAdjustHead:      {4, 10},
	asm.FnSkbAdjustRoom:      {4, 13},
	asm.FnRedirectMap:        {4, 14},
	asm.FnFibLookup:          {4, 18},
	asm.FnXdpAdjustTail:      {4, 18},
	asm.FnJiffies64:          {5, 5},
	asm.FnRingbufOutput:      {5, 8},
	asm.FnRingbufReserve:     {5, 8},
	asm.FnRingbufSubmit:      {5, 8},
	asm.FnRingbufDiscard:     {5, 8},
	asm.FnRingbufQuery:       {5, 8},
	asm.FnKtimeGetBootNs:     {5, 8},
	asm.FnRedirectNeigh:      {5, 10},
	asm.FnKtimeGetCoarseNs:   {5, 11},
	asm.FnCheckMtu:           {5, 12},
	asm.FnLoop:               {5, 17},
	asm.FnXdpGetBuffLen:      {5, 18},
	asm.FnXdpLoadBytes:       {5, 18},
	asm.FnXdpStoreBytes:      {5, 18},
	asm.FnSkbSetTstamp:       {5, 18},
	asm.FnKtimeGetTaiNs:      {6, 1},
	asm.FnGetHashRecalc:      {4, 8},
	asm.FnSetHash:            {4, 13},
	asm.FnSkbVlanPush:        {4, 3},
	asm.FnSkbVlanPop:         {4, 3},
	asm.FnSkbUnderCgroup:     {4, 8},
	asm.FnGetCgroupClassid:   {4, 3},
	asm.FnGetRouteRealm:      {4, 4},
	asm.FnTailCall:           {4, 2},
	asm.FnSkbChangeType:      {4, 8},
	asm.FnSetHashInvalid:     {4, 9},
	asm.FnGetNumaNodeId:      {4, 10},
	asm.FnSkbEcnSetCe:        {5, 1},
	asm.FnSkbCgroupId:        {4, 18},
	asm.FnProbeReadKernel:    {5, 5},
	asm.FnGetSocketCookie:    {4, 12},
	asm.FnTracePrintk:        {4, 1},
	asm.FnGetCurrentPidTgid:  {4, 2},
	asm.FnSpinLock:           {5, 1},
	asm.FnSpinUnlock:         {5, 1},
	asm.FnGetCurrentTask:     {4, 8},
	asm.FnXdpAdjustMeta:      {4, 15},
	asm.FnSkbGetXfrmState:    {4, 18},
	asm.FnSkLookupTcp:        {4, 20},
	asm.FnSkLookupUdp:        {4, 20},
	asm.FnSkRelease:          {4, 20},
	asm.FnMapPushElem:        {4, 20},
	asm.FnMapPopElem:         {4, 20},
	asm.FnMapPeekElem:        {4, 20},
	asm.FnProbeReadKernelStr: {5, 5},
}

// XDP programs of section "xdp.frags" (multi-buffer XDP) load from 5.18 on.
var fragsSince = Version{5, 18}

// TestMinKernelCoversObjects: the kernel row's minimum of each role is at
// least the newest helper its object calls. The XDP collector's said 5.9
// ("XDP links"), as did docs/deploy.md's kernel matrix, while its program
// is multi-buffer XDP reading with bpf_xdp_load_bytes (5.18): on Ubuntu
// 22.04's 5.15 the row passed and only the helpers' row failed.
func TestMinKernelCoversObjects(t *testing.T) {
	for _, c := range []struct {
		role string
		opts RoleOptions
	}{
		{RoleSource, RoleOptions{}},
		{RoleLB, RoleOptions{}},
		{RoleCollect, RoleOptions{CollectXDP: true}},
	} {
		req, err := ForRole(c.role, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		need, why := Version{}, ""
		for _, spec := range req.Objects {
			for name, p := range spec.Programs {
				if p.Type == ebpf.XDP && p.SectionName == "xdp.frags" && need.Less(fragsSince) {
					need, why = fragsSince, name+": xdp.frags"
				}
				for _, ins := range p.Instructions {
					if !ins.IsBuiltinCall() {
						continue
					}
					fn := asm.BuiltinFunc(ins.Constant)
					v, ok := helperSince[fn]
					if !ok {
						t.Errorf("%s: %s calls %s: add the release that brought it to helperSince", c.role, name, fn)
						continue
					}
					if need.Less(v) {
						need, why = v, name+": "+fn.String()
					}
				}
			}
		}
		if req.MinKernel.Less(need) {
			t.Errorf("%s: minimum %s (%s), but %s needs %s", c.role, req.MinKernel, req.MinKernelWhy, why, need)
		}
	}
}
