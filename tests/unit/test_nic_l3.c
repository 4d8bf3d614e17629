/* SPDX-License-Identifier: MIT */
/* The nic's IPv4 layer on the sim backend: routing by (address, protocol, port), port ownership and holds,
 * the receiver's IPv4 header checks, impairments, and the IPv4 packet parser itself. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include <viaduct/nic.h>

#include "lib/core/frame.h"

#define IP_A "10.0.0.1"
#define IP_B "10.0.0.2"

static uint32_t ip_of(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

/*
 * Builds an IPv4 packet with an L4 header of the protocol's minimal size (ports first, as TCP and UDP
 * both have them) followed by payload bytes derived from seq. Returns its length.
 */
static size_t build_pkt(uint8_t *p, uint8_t proto, const char *src, const char *dst, uint16_t sport,
			uint16_t dport, uint32_t seq, size_t payload)
{
	size_t l4 = proto == IPPROTO_TCP ? 20 : 8;
	size_t tot = 20 + l4 + payload;
	uint32_t s = ip_of(src), d = ip_of(dst);

	memset(p, 0, tot);
	p[0] = 0x45;
	p[2] = (uint8_t)(tot >> 8);
	p[3] = (uint8_t)tot;
	p[6] = 0x40; /* DF */
	p[8] = 64;
	p[9] = proto;
	memcpy(p + 12, &s, 4);
	memcpy(p + 16, &d, 4);
	uint16_t c = vd__csum_fold(vd__csum_partial(p, 20, 0));
	memcpy(p + 10, &c, 2);
	p[20] = (uint8_t)(sport >> 8);
	p[21] = (uint8_t)sport;
	p[22] = (uint8_t)(dport >> 8);
	p[23] = (uint8_t)dport;
	if (proto == IPPROTO_TCP)
		p[32] = 5 << 4; /* data offset */
	else {
		p[24] = (uint8_t)((l4 + payload) >> 8);
		p[25] = (uint8_t)(l4 + payload);
	}
	for (size_t i = 0; i < payload; i++)
		p[20 + l4 + i] = (uint8_t)(seq + i);
	memcpy(p + 20 + l4, &seq, payload >= 4 ? 4 : 0);
	return tot;
}

static void fix_ip_csum(uint8_t *p)
{
	size_t ihl = (size_t)(p[0] & 15) * 4;
	p[10] = p[11] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(p, ihl, 0));
	memcpy(p + 10, &c, 2);
}

static int open_l3(struct vd_nic **n, struct vd_sim_link *l, const char *local)
{
	struct vd_nic_opts o = {
		.backend = VD_BACKEND_SIM, .sim = l, .local = local, .layer = VD_NIC_LAYER_IPV4,
	};
	return vd_nic_open(n, &o);
}

static int send_pkt(struct vd_nic *n, const uint8_t *p, size_t len)
{
	struct vd_addr to = { 0 };
	memcpy(&to.ip, p + 16, 4);
	return vd_nic_send(n, &to, p, len);
}

TEST(open_and_mtu)
{
	struct vd_sim_params prm = { .mtu = 9000 };
	struct vd_sim_link *l;
	struct vd_nic *a, *b, *u;
	REQUIRE(vd_sim_link_new(&l, &prm) == 0);
	REQUIRE(open_l3(&a, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_A ":0") == 0); /* two nics of one host share an address */
	CHECK_EQ(vd_nic_max_payload(a), 9000);
	struct vd_addr la;
	vd_nic_local_addr(a, &la);
	CHECK_EQ(la.ip, ip_of(IP_A));
	CHECK_EQ(la.port, 0);
	CHECK_EQ(open_l3(&u, l, "0.0.0.0"), -EINVAL);
	CHECK_EQ(open_l3(&u, l, "10.0.0.1:99999"), -EINVAL);

	/* An IPv4-layer nic with an own UDP port owns it like an added one. */
	struct vd_nic *c, *d;
	REQUIRE(open_l3(&c, l, IP_B ":53") == 0);
	CHECK_EQ(open_l3(&d, l, IP_B ":53"), -EADDRINUSE);
	uint16_t port = htons(53);
	CHECK_EQ(vd_nic_port_add(c, IPPROTO_UDP, &port), -EEXIST);

	/* Not on the udp backend, not with the shm mux. */
	struct vd_nic_opts o = { .backend = VD_BACKEND_UDP, .local = "127.0.0.1:0", .layer = VD_NIC_LAYER_IPV4 };
	CHECK_EQ(vd_nic_open(&u, &o), -EOPNOTSUPP);
	o.backend = VD_BACKEND_SIM;
	o.sim = l;
	o.same_host_shm = 1;
	CHECK_EQ(vd_nic_open(&u, &o), -EINVAL);
	o.same_host_shm = 0;
	o.layer = (enum vd_nic_layer)7;
	CHECK_EQ(vd_nic_open(&u, &o), -EINVAL);

	/* A UDP-layer nic owns no extra ports. */
	struct vd_nic_opts uo = { .backend = VD_BACKEND_SIM, .sim = l, .local = IP_A ":7" };
	REQUIRE(vd_nic_open(&u, &uo) == 0);
	CHECK_EQ(vd_nic_max_payload(u), 9000 - 28);
	port = htons(80);
	CHECK_EQ(vd_nic_port_add(u, IPPROTO_TCP, &port), -EOPNOTSUPP);
	vd_nic_close(u);

	/* Too big a packet. */
	static uint8_t big[9100];
	size_t len = build_pkt(big, IPPROTO_UDP, IP_B, IP_A, 1, 2, 0, 9000 - 28);
	CHECK_EQ(len, 9000);
	CHECK_EQ(send_pkt(c, big, len + 1), -EMSGSIZE);
	vd_nic_close(a);
	vd_nic_close(b);
	vd_nic_close(c);
	vd_sim_link_free(l);
}

TEST(port_ownership)
{
	struct vd_sim_link *l;
	struct vd_nic *a, *b, *c;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	REQUIRE(open_l3(&a, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_A) == 0);
	REQUIRE(open_l3(&c, l, IP_B) == 0);

	uint16_t p80 = htons(80), p = p80;
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &p), 0);
	CHECK_EQ(p, p80);
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &p), -EEXIST);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), -EADDRINUSE);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_UDP, &p), 0);  /* another protocol */
	CHECK_EQ(vd_nic_port_add(c, IPPROTO_TCP, &p), 0);  /* another address */
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_ICMP, &p), -EINVAL);
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, NULL), -EINVAL);
	CHECK_EQ(vd_nic_port_del(a, IPPROTO_TCP, 0, 0), -EINVAL);
	CHECK_EQ(vd_nic_port_del(a, IPPROTO_TCP, htons(81), 0), -ENOENT);

	/* Ephemeral picks: in 32768-60999, distinct, skipping taken ones. */
	uint16_t e1 = 0, e2 = 0;
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &e1), 0);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &e2), 0);
	CHECK(ntohs(e1) >= 32768 && ntohs(e1) <= 60999);
	CHECK(ntohs(e2) >= 32768 && ntohs(e2) <= 60999);
	CHECK(e1 != e2);

	/* Freed at once: someone else takes it. */
	CHECK_EQ(vd_nic_port_del(a, IPPROTO_TCP, p80, 0), 0);
	CHECK_EQ(vd_nic_port_del(a, IPPROTO_TCP, p80, 0), -ENOENT);
	p = p80;
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), 0);

	/* Held: nobody, the releasing nic included, takes it until the hold ends on the virtual clock. */
	CHECK_EQ(vd_nic_port_del(b, IPPROTO_TCP, p80, 1000), 0);
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &p), -EADDRINUSE);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), -EADDRINUSE);
	vd_sim_advance(l, 999 * 1000000ull);
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &p), -EADDRINUSE);
	vd_sim_advance(l, 1000000ull);
	CHECK_EQ(vd_nic_port_add(a, IPPROTO_TCP, &p), 0);

	/* The per-nic limit. */
	int rc = 0, n = 0;
	for (int i = 0; i < 2000 && rc == 0; i++, n++) {
		uint16_t q = 0;
		rc = vd_nic_port_add(c, IPPROTO_UDP, &q);
	}
	CHECK_EQ(rc, -ENOSPC);
	CHECK(n > 1000 && n < 1100);

	vd_nic_close(a);
	vd_nic_close(b);
	vd_nic_close(c);
	vd_sim_link_free(l);
}

/* Closing a nic holds the TCP ports it picked for the TIME-WAIT period; ports asked by number, and UDP
 * ports, are freed at once. */
TEST(close_reclaims)
{
	struct vd_sim_link *l;
	struct vd_nic *a, *b;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	REQUIRE(open_l3(&a, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_A) == 0);
	uint16_t num = htons(8080), eph = 0, ueph = 0;
	REQUIRE(vd_nic_port_add(a, IPPROTO_TCP, &num) == 0);
	REQUIRE(vd_nic_port_add(a, IPPROTO_TCP, &eph) == 0);
	REQUIRE(vd_nic_port_add(a, IPPROTO_UDP, &ueph) == 0);
	vd_nic_close(a);
	uint16_t p = num;
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), 0);
	p = ueph;
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_UDP, &p), 0);
	p = eph;
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), -EADDRINUSE);
	vd_sim_advance(l, 59ull * 1000000000ull);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), -EADDRINUSE);
	vd_sim_advance(l, 1000000000ull);
	CHECK_EQ(vd_nic_port_add(b, IPPROTO_TCP, &p), 0);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

TEST(routing_and_delivery)
{
	struct vd_sim_link *l;
	struct vd_nic *a1, *a2, *b;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	REQUIRE(open_l3(&a1, l, IP_A) == 0);
	REQUIRE(open_l3(&a2, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_B) == 0);
	uint16_t t80 = htons(80), u53 = htons(53);
	REQUIRE(vd_nic_port_add(a1, IPPROTO_TCP, &t80) == 0);
	REQUIRE(vd_nic_port_add(a2, IPPROTO_UDP, &u53) == 0);

	uint8_t pkt[1500];
	struct vd_frame f[4];
	size_t len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 40000, 80, 7, 100);
	CHECK_EQ(send_pkt(b, pkt, len), 0);
	len = build_pkt(pkt, IPPROTO_UDP, IP_B, IP_A, 40001, 53, 8, 33);
	CHECK_EQ(send_pkt(b, pkt, len), 0);
	/* Unowned port, unowned address, another protocol: no one to deliver to. */
	build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 40000, 81, 9, 10);
	CHECK_EQ(send_pkt(b, pkt, 50), 0);
	build_pkt(pkt, IPPROTO_UDP, IP_B, IP_A, 40000, 80, 9, 10);
	CHECK_EQ(send_pkt(b, pkt, 38), 0);
	build_pkt(pkt, IPPROTO_TCP, IP_B, "10.0.0.3", 40000, 80, 9, 10);
	CHECK_EQ(send_pkt(b, pkt, 50), 0);
	struct vd_sim_counters c;
	vd_sim_counters(l, &c);
	CHECK_EQ(c.unroutable, 3);

	CHECK_EQ(vd_nic_rx_burst(a1, f, 4), 1);
	uint8_t want[1500];
	size_t wlen = build_pkt(want, IPPROTO_TCP, IP_B, IP_A, 40000, 80, 7, 100);
	CHECK_EQ(f[0].len, wlen);
	CHECK(memcmp(f[0].data, want, wlen) == 0);
	CHECK_EQ(f[0].peer.ip, ip_of(IP_B));
	CHECK_EQ(f[0].peer.port, 0);
	vd_nic_rx_release(a1, f, 1);
	CHECK_EQ(vd_nic_rx_burst(a2, f, 4), 1);
	CHECK_EQ(f[0].len, 20 + 8 + 33);
	CHECK_EQ(((uint8_t *)f[0].data)[9], IPPROTO_UDP);
	vd_nic_rx_release(a2, f, 1);
	CHECK_EQ(vd_nic_rx_burst(a1, f, 4), 0);
	CHECK_EQ(vd_nic_rx_burst(b, f, 4), 0);

	/* Zero-copy TX path and a reply, with trailing bytes past the total length trimmed. */
	uint16_t bp = htons(40000);
	REQUIRE(vd_nic_port_add(b, IPPROTO_TCP, &bp) == 0);
	REQUIRE(vd_nic_tx_alloc(a1, f, 1) == 1);
	CHECK_EQ(f[0].len, 1500);
	len = build_pkt(f[0].data, IPPROTO_TCP, IP_A, IP_B, 80, 40000, 11, 20);
	f[0].len = (uint32_t)len + 6; /* link padding */
	f[0].peer.ip = ip_of(IP_B);
	f[0].peer.port = 0;
	CHECK_EQ(vd_nic_tx_burst(a1, f, 1), 1);
	CHECK_EQ(vd_nic_flush(a1), 0);
	CHECK_EQ(vd_nic_rx_burst(b, f, 4), 1);
	CHECK_EQ(f[0].len, len);
	CHECK_EQ(f[0].peer.ip, ip_of(IP_A));
	vd_nic_rx_release(b, f, 1);

	struct vd_nic_stats st;
	vd_nic_stats(a1, &st);
	CHECK_EQ(st.rx_frames, 1);
	CHECK_EQ(st.tx_frames, 1);
	vd_nic_close(a1);
	vd_nic_close(a2);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

/* The receiver drops what vd__ipv4_parse rejects and counts it. */
TEST(header_checks)
{
	struct vd_sim_link *l;
	struct vd_nic *a, *b;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	REQUIRE(open_l3(&a, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_B) == 0);
	uint16_t p = htons(80);
	REQUIRE(vd_nic_port_add(a, IPPROTO_TCP, &p) == 0);

	uint8_t pkt[200];
	size_t len;
	int sent = 0;
	/* bad header checksum */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	pkt[10] ^= 1;
	sent += send_pkt(b, pkt, len) == 0;
	/* version 6 */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	pkt[0] = 0x65;
	fix_ip_csum(pkt);
	sent += send_pkt(b, pkt, len) == 0;
	/* total length beyond the frame */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	pkt[3] += 1;
	fix_ip_csum(pkt);
	sent += send_pkt(b, pkt, len) == 0;
	/* a fragment: MF, then an offset */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	pkt[6] = 0x20;
	fix_ip_csum(pkt);
	sent += send_pkt(b, pkt, len) == 0;
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	pkt[6] = 0x00;
	pkt[7] = 0x10;
	fix_ip_csum(pkt);
	sent += send_pkt(b, pkt, len) == 0;
	/* a TCP header cut short by the total length */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 0);
	pkt[3] = 39;
	fix_ip_csum(pkt);
	sent += send_pkt(b, pkt, len) == 0;
	/* IHL beyond the packet */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 0);
	pkt[0] = 0x4f;
	sent += send_pkt(b, pkt, len) == 0; /* routing reads the port at IHL: 60 + 4 > 40, unroutable */
	CHECK_EQ(sent, 7);

	/* with options (IHL 6): accepted */
	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 80, 0, 10);
	memmove(pkt + 24, pkt + 20, len - 20);
	memset(pkt + 20, 1, 4); /* four NOPs (RFC 791) */
	pkt[0] = 0x46;
	len += 4;
	pkt[3] = (uint8_t)len;
	fix_ip_csum(pkt);
	CHECK_EQ(send_pkt(b, pkt, len), 0);

	struct vd_frame f[8];
	CHECK_EQ(vd_nic_rx_burst(a, f, 8), 1);
	CHECK_EQ(f[0].len, len);
	vd_nic_rx_release(a, f, 1);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	CHECK_EQ(st.rx_malformed, 6);
	struct vd_sim_counters c;
	vd_sim_counters(l, &c);
	CHECK_EQ(c.unroutable, 1);
	vd_nic_close(a);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

/* Loss, duplication, reordering, corruption and delay over the IPv4 layer, replayed exactly by seed. */
static void impaired_run(uint64_t seed, struct vd_sim_counters *c, uint64_t *rx, uint64_t *malformed,
			 uint64_t *bad_payload, uint64_t *order_hash)
{
	struct vd_sim_params prm = {
		.seed = seed, .loss_ppm = 50000, .dup_ppm = 30000, .reorder_ppm = 50000, .corrupt_ppm = 50000,
		.delay_ns = 1000000, .jitter_ns = 100000, .reorder_ns = 500000,
	};
	struct vd_sim_link *l;
	struct vd_nic *a, *b;
	*rx = *malformed = *bad_payload = *order_hash = 0;
	if (vd_sim_link_new(&l, &prm) || open_l3(&a, l, IP_A) || open_l3(&b, l, IP_B))
		abort();
	uint16_t p = htons(9);
	if (vd_nic_port_add(a, IPPROTO_UDP, &p))
		abort();
	uint8_t pkt[300], want[300];
	for (uint32_t i = 0; i < 2000; i++) {
		size_t len = build_pkt(pkt, IPPROTO_UDP, IP_B, IP_A, 7, 9, i, 200);
		if (send_pkt(b, pkt, len))
			abort();
		if (i % 16 == 15)
			vd_sim_advance(l, 100000);
	}
	struct vd_frame f[32];
	for (int spins = 0; spins < 100000 && vd_nic_wait(a, 100) == 1; spins++) {
		int n = vd_nic_rx_burst(a, f, 32);
		for (int i = 0; i < n; i++) {
			uint32_t seq;
			memcpy(&seq, (uint8_t *)f[i].data + 28, 4);
			size_t len = build_pkt(want, IPPROTO_UDP, IP_B, IP_A, 7, 9, seq, 200);
			if (f[i].len != len || memcmp(f[i].data, want, len) != 0)
				(*bad_payload)++; /* the corruption the stack's UDP checksum must catch */
			*order_hash = *order_hash * 31 + seq;
			(*rx)++;
		}
		vd_nic_rx_release(a, f, (unsigned)n);
	}
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	*malformed = st.rx_malformed;
	vd_sim_counters(l, c);
	vd_nic_close(a);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

TEST(impairments)
{
	struct vd_sim_counters c1, c2;
	uint64_t rx1, mal1, bad1, h1, rx2, mal2, bad2, h2;
	impaired_run(42, &c1, &rx1, &mal1, &bad1, &h1);
	impaired_run(42, &c2, &rx2, &mal2, &bad2, &h2);
	CHECK_EQ(rx1, rx2);
	CHECK_EQ(h1, h2);
	CHECK_EQ(mal1, mal2);
	CHECK_EQ(c1.sent, 2000);
	CHECK(c1.lost > 50 && c1.lost < 160);
	CHECK(c1.duplicated > 20 && c1.duplicated < 110);
	CHECK(c1.reordered > 50);
	CHECK(c1.corrupted > 50);
	CHECK_EQ(c1.unroutable, 0);
	/* Every corruption is either caught by the header check or seen in the payload; 20 of 228 bytes
	 * are the IPv4 header. */
	CHECK_EQ(mal1 + bad1, c1.corrupted);
	CHECK(mal1 > 0 && bad1 > 0);
	CHECK_EQ(rx1 + mal1, c1.sent + c1.duplicated - c1.lost);
	CHECK_EQ(c1.delivered, rx1);
	impaired_run(43, &c2, &rx2, &mal2, &bad2, &h2);
	CHECK(h1 != h2);
}

/* The parser on its own, including the Ethernet variant. */
TEST(parser)
{
	uint8_t pkt[100], fr[120];
	struct vd__ipv4_view v;
	size_t len = build_pkt(pkt, IPPROTO_UDP, IP_B, IP_A, 1234, 53, 0, 5);
	CHECK_EQ(vd__ipv4_parse(pkt, len, &v), 0);
	CHECK_EQ(v.proto, IPPROTO_UDP);
	CHECK_EQ(v.hdr_len, 20);
	CHECK_EQ(v.tot_len, len);
	CHECK(v.l4 == pkt + 20);
	CHECK_EQ(v.src_port_be, htons(1234));
	CHECK_EQ(v.dst_port_be, htons(53));
	CHECK_EQ(v.src_ip_be, ip_of(IP_B));
	CHECK_EQ(v.dst_ip_be, ip_of(IP_A));
	CHECK_EQ(vd__ipv4_parse(pkt, len + 10, &v), 0); /* padding */
	CHECK_EQ(v.tot_len, len);
	for (size_t cut = 0; cut < len; cut++)
		CHECK_EQ(vd__ipv4_parse(pkt, cut, &v), -EBADMSG);
	pkt[9] = 1; /* ICMP */
	fix_ip_csum(pkt);
	CHECK_EQ(vd__ipv4_parse(pkt, len, &v), -EBADMSG);

	len = build_pkt(pkt, IPPROTO_TCP, IP_B, IP_A, 1, 2, 0, 0);
	const uint8_t mac1[6] = { 2, 0, 0, 0, 0, 1 }, mac2[6] = { 2, 0, 0, 0, 0, 2 };
	vd__frame_build_eth(fr, mac1, mac2);
	memcpy(fr + VD_ETH_HLEN, pkt, len);
	CHECK_EQ(vd__frame_parse_ipv4(fr, VD_ETH_HLEN + len, &v), 0);
	CHECK(v.l4 == fr + VD_ETH_HLEN + 20);
	CHECK(memcmp(fr, mac1, 6) == 0 && memcmp(fr + 6, mac2, 6) == 0);
	fr[12] = 0x86;
	CHECK_EQ(vd__frame_parse_ipv4(fr, VD_ETH_HLEN + len, &v), -EBADMSG);
	CHECK_EQ(vd__frame_parse_ipv4(fr, 3, &v), -EBADMSG);
}

/* The pseudo-header sum of RFC 768 / RFC 9293 3.1 as it lies in memory, folded and not complemented. */
static uint16_t pseudo_partial(const uint8_t *ip)
{
	uint8_t ph[12];
	uint32_t tot = (uint32_t)ip[2] << 8 | ip[3], l4 = tot - 20;
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	ph[10] = (uint8_t)(l4 >> 8);
	ph[11] = (uint8_t)l4;
	return (uint16_t)~vd__csum_fold(vd__csum_partial(ph, 12, 0));
}

static int l4_csum_ok(const uint8_t *ip)
{
	uint8_t ph[12];
	uint32_t tot = (uint32_t)ip[2] << 8 | ip[3], l4 = tot - 20;
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	ph[10] = (uint8_t)(l4 >> 8);
	ph[11] = (uint8_t)l4;
	return vd__csum_fold(vd__csum_partial(ip + 20, l4, vd__csum_partial(ph, 12, 0))) == 0;
}

/* peer.port = VD_NIC_TX_L4_CSUM: the nic completes a CHECKSUM_PARTIAL TCP or UDP checksum. */
TEST(tx_l4_csum)
{
	struct vd_sim_link *l;
	struct vd_nic *a, *b;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	REQUIRE(open_l3(&a, l, IP_A) == 0);
	REQUIRE(open_l3(&b, l, IP_B) == 0);
	uint16_t t = htons(80), u = htons(53);
	REQUIRE(vd_nic_port_add(a, IPPROTO_TCP, &t) == 0);
	REQUIRE(vd_nic_port_add(a, IPPROTO_UDP, &u) == 0);
	uint8_t pkt[300];
	struct vd_addr to = { .ip = ip_of(IP_A), .port = VD_NIC_TX_L4_CSUM };
	for (int i = 0; i < 2; i++) {
		uint8_t proto = i ? IPPROTO_UDP : IPPROTO_TCP;
		size_t len = build_pkt(pkt, proto, IP_B, IP_A, 1000, i ? 53 : 80, 77, 101);
		uint16_t c = pseudo_partial(pkt);
		memcpy(pkt + 20 + (i ? 6 : 16), &c, 2);
		CHECK(!l4_csum_ok(pkt));
		CHECK_EQ(vd_nic_send(b, &to, pkt, len), 0);
	}
	/* Without the flag the packet goes as written. */
	size_t len = build_pkt(pkt, IPPROTO_UDP, IP_B, IP_A, 1000, 53, 77, 101);
	to.port = 0;
	CHECK_EQ(vd_nic_send(b, &to, pkt, len), 0);
	struct vd_frame f[4];
	CHECK_EQ(vd_nic_rx_burst(a, f, 4), 3);
	CHECK(l4_csum_ok(f[0].data));
	CHECK(l4_csum_ok(f[1].data));
	CHECK(!l4_csum_ok(f[2].data));
	CHECK(memcmp(f[2].data, pkt, len) == 0);
	vd_nic_rx_release(a, f, 3);
	vd_nic_close(a);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

TEST_MAIN(T(open_and_mtu), T(tx_l4_csum), T(port_ownership), T(close_reclaims), T(routing_and_delivery), T(header_checks),
	  T(impairments), T(parser))
