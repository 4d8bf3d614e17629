/* SPDX-License-Identifier: MIT */
/*
 * Hardware steering for direct endpoints: an ethtool ntuple rule sends the endpoint's flow (its UDP
 * destination address and port) to the queue its XSK is bound to, so every frame takes the XSK path
 * without relying on RSS luck. Devices without ntuple filters (veth, most virtual NICs) refuse with
 * EOPNOTSUPP; that is fine, the dispatcher copies frames that land on another queue into the endpoint's
 * steering ring instead (docs/design.md, "RX: direct and steered").
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"

static int ethtool_rxnfc(const char *ifname, struct ethtool_rxnfc *nfc)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	ifr.ifr_data = (void *)nfc;
	int err = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
	close(fd);
	return err;
}

int vd__ntuple_add(const char *ifname, uint32_t ip_be, uint16_t port_be, uint32_t queue, uint32_t *loc)
{
	struct ethtool_rxnfc nfc;
	memset(&nfc, 0, sizeof(nfc));
	nfc.cmd = ETHTOOL_SRXCLSRLINS;
	nfc.fs.flow_type = UDP_V4_FLOW;
	nfc.fs.h_u.udp_ip4_spec.ip4dst = ip_be;
	nfc.fs.h_u.udp_ip4_spec.pdst = port_be;
	/* Mask bits set to one are the bits matched (include/uapi/linux/ethtool.h, struct ethtool_rx_flow_spec). */
	nfc.fs.m_u.udp_ip4_spec.ip4dst = 0xffffffffu;
	nfc.fs.m_u.udp_ip4_spec.pdst = 0xffff;
	nfc.fs.ring_cookie = queue;
	nfc.fs.location = RX_CLS_LOC_ANY; /* the driver picks a free slot and reports it back */
	int err = ethtool_rxnfc(ifname, &nfc);
	if (!err)
		*loc = nfc.fs.location;
	return err;
}

void vd__ntuple_del(const char *ifname, uint32_t loc)
{
	struct ethtool_rxnfc nfc;
	memset(&nfc, 0, sizeof(nfc));
	nfc.cmd = ETHTOOL_SRXCLSRLDEL;
	nfc.fs.location = loc;
	int err = ethtool_rxnfc(ifname, &nfc);
	if (err)
		vd__warn("%s: cannot remove ntuple rule %u: %s", ifname, loc, strerror(-err));
}
