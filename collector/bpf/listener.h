// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The listener of the collector's XDP receive path, set by the loader
 * (collector/xdprecv.go, load) before the program is loaded: the address,
 * and which inputs it takes there. */
#ifndef XM_COLLECT_LISTENER_H
#define XM_COLLECT_LISTENER_H

#include <linux/types.h>
#include "consts.h"

/* Family 4 or 6, the address in network order (IPv4 in word 0). */
volatile const __u32 listen_family = 4;
volatile const __u32 listen_addr[4] = {};
/* VXLAN: on when vxlan_on, at listen_port (network order). */
volatile const __u8 vxlan_on = 1;
volatile const __u16 listen_port = 0;
/* GENEVE: the UDP ports (network order) of the GENEVE inputs; 0 = none. */
volatile const __u16 geneve_ports[XM_COL_MAX_GENEVE] = {};
/* GRE (IP protocol 47: ERSPAN and bridging): on when gre_on. */
volatile const __u8 gre_on = 0;

#endif
