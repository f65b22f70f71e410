// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Test-only programs over the product's code: what a BPF_PROG_TEST_RUN
 * context cannot set up by itself. Loaded by the tests with the product's
 * maps in place of their own. */
#include "source.c"

/* xm_test_direct_port finishes a direct clone whose tc_index carries cb[0],
 * as direct_clone leaves it: test contexts cannot set tc_index. */
SEC("tc")
int xm_test_direct_port(struct __sk_buff *skb)
{
	skb->tc_index = skb->cb[0];
	return direct_finish(skb);
}
