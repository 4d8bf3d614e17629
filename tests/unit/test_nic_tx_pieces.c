/* SPDX-License-Identifier: MIT */
/*
 * Placed TX writing (nic.h vd_nic_tx_pieces, VD_NIC_TX_PLACED): the chunk layout arithmetic of
 * lib/nic/tx_layout.h against the descriptors xdp_tx_descs (nic_xdp.c) makes of a contiguous frame, and
 * the contiguous fallback with the flag on the sim backend.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <viaduct/nic.h>

#include "lib/core/frame.h"
#include "lib/nic/tx_layout.h"

#define CHUNK 4096u
#define NCHUNK 4u
#define TX_OFF 272u /* headroom + metadata room before the frame in its first chunk, as xdp has it */
#define GAP 16u

static uint8_t placed_buf[CHUNK * NCHUNK], moved_buf[CHUNK * NCHUNK];

static struct vd__tx_layout layout_of(uint8_t *buf)
{
	struct vd__tx_layout l = {
		.base = buf + TX_OFF, .chunk0 = buf, .first = CHUNK - TX_OFF, .stride = CHUNK, .gap = GAP,
		.cap = CHUNK - TX_OFF + (NCHUNK - 1) * (CHUNK - GAP),
	};
	return l;
}

static uint8_t pat(uint32_t i)
{
	return (uint8_t)(i * 131u + (i >> 8) * 7u + 1u);
}

/*
 * The frame bytes in descriptor order, as the kernel reads them from the descriptors xdp_tx_descs writes
 * (first chunk from TX_OFF on, chunk k from GAP on), into out.
 */
static void read_descs(const uint8_t *buf, uint32_t flen, uint8_t *out)
{
	uint32_t first = CHUNK - TX_OFF, per = CHUNK - GAP;
	uint32_t n0 = flen < first ? flen : first;
	memcpy(out, buf + TX_OFF, n0);
	for (uint32_t k = 1, done = n0; done < flen; k++) {
		uint32_t n = flen - done < per ? flen - done : per;
		memcpy(out + done, buf + k * CHUNK + GAP, n);
		done += n;
	}
}

/* The unplaced path: the frame written contiguous, then moved as xdp_tx_descs does (last piece first). */
static void write_moved(uint8_t *buf, uint32_t flen)
{
	for (uint32_t i = 0; i < flen; i++)
		buf[TX_OFF + i] = pat(i);
	uint32_t first = CHUNK - TX_OFF, per = CHUNK - GAP;
	if (flen <= first)
		return;
	uint32_t rest = flen - first, n = (rest + per - 1) / per;
	for (uint32_t k = n; k >= 1; k--) {
		uint32_t off = (k - 1) * per, len = rest - off < per ? rest - off : per;
		memmove(buf + k * CHUNK + GAP, buf + CHUNK + off, len);
	}
}

/* Frames written piecewise through the layout (headers, then data from an offset, in two calls as the TCP
 * output does) read back through the descriptors exactly as written, and as the moved contiguous frame. */
TEST(layout_matches_descriptors)
{
	struct vd__tx_layout l = layout_of(placed_buf);
	static uint8_t got[CHUNK * NCHUNK], want[CHUNK * NCHUNK];
	const uint32_t lens[] = { 1, 54, CHUNK - TX_OFF - 1, CHUNK - TX_OFF, CHUNK - TX_OFF + 1,
				  CHUNK - TX_OFF + CHUNK - GAP, CHUNK - TX_OFF + CHUNK - GAP + 1, 9014, l.cap };
	const uint32_t splits[] = { 0, 14, 54, 74, CHUNK - TX_OFF - 3 };
	for (size_t a = 0; a < sizeof(lens) / sizeof(lens[0]); a++) {
		for (size_t b = 0; b < sizeof(splits) / sizeof(splits[0]); b++) {
			uint32_t flen = lens[a], hdr = splits[b] < flen ? splits[b] : flen;
			memset(placed_buf, 0xEE, sizeof(placed_buf));
			struct iovec iov[VD_NIC_TX_PIECES_MAX];
			uint32_t at = 0;
			for (int part = 0; part < 2; part++) {
				uint32_t off = part ? hdr : 0, len = part ? flen - hdr : hdr;
				int n = vd__tx_layout_pieces(&l, off, len, iov, VD_NIC_TX_PIECES_MAX);
				REQUIRE(n >= 0);
				for (int i = 0; i < n; i++) {
					uint8_t *p = iov[i].iov_base;
					size_t in = (size_t)(p - placed_buf) % CHUNK;
					/* never across a chunk, never in a further chunk's metadata room */
					CHECK(in + iov[i].iov_len <= CHUNK);
					CHECK(p < placed_buf + CHUNK || in >= GAP);
					for (size_t j = 0; j < iov[i].iov_len; j++)
						p[j] = pat(at++);
				}
			}
			CHECK_EQ(at, flen);
			read_descs(placed_buf, flen, got);
			for (uint32_t i = 0; i < flen; i++)
				want[i] = pat(i);
			CHECK(memcmp(got, want, flen) == 0);
			write_moved(moved_buf, flen);
			read_descs(moved_buf, flen, got);
			CHECK(memcmp(got, want, flen) == 0);
		}
	}
}

TEST(layout_limits)
{
	struct vd__tx_layout l = layout_of(placed_buf);
	struct iovec iov[VD_NIC_TX_PIECES_MAX];
	CHECK_EQ(vd__tx_layout_pieces(&l, 0, 0, iov, 4), 0);
	CHECK_EQ(vd__tx_layout_pieces(&l, 0, l.cap, iov, VD_NIC_TX_PIECES_MAX), (int)NCHUNK);
	CHECK_EQ(vd__tx_layout_pieces(&l, 0, l.cap, iov, NCHUNK - 1), -ENOSPC);
	CHECK_EQ(vd__tx_layout_pieces(&l, 1, l.cap, iov, VD_NIC_TX_PIECES_MAX), -EMSGSIZE);
	CHECK_EQ(vd__tx_layout_pieces(&l, l.cap + 1, 0, iov, VD_NIC_TX_PIECES_MAX), -EMSGSIZE);
	/* exactly at the first chunk's end: the next byte is the second chunk's first after its room */
	CHECK_EQ(vd__tx_layout_pieces(&l, l.first, 1, iov, 1), 1);
	CHECK((uint8_t *)iov[0].iov_base == placed_buf + CHUNK + GAP);
}

static uint32_t ip_of(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

/* RFC 9293 3.1 / RFC 1071: the TCP checksum over pseudo-header and segment verifies. */
static int tcp_csum_ok(const uint8_t *ip, uint32_t len)
{
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = IPPROTO_TCP;
	ph[10] = (uint8_t)((len - 20) >> 8);
	ph[11] = (uint8_t)(len - 20);
	return vd__csum_fold(vd__csum_partial(ip + 20, len - 20, vd__csum_partial(ph, 12, 0))) == 0;
}

/* sim: one piece, the contiguous view; a frame queued with VD_NIC_TX_PLACED goes out as written, its
 * checksum completed (VD_NIC_TX_L4_CSUM) as without the flag. */
TEST(sim_contiguous)
{
	struct vd_sim_params prm = { .mtu = 9000 };
	struct vd_sim_link *l;
	struct vd_nic *a, *b;
	REQUIRE(vd_sim_link_new(&l, &prm) == 0);
	struct vd_nic_opts o = { .backend = VD_BACKEND_SIM, .sim = l, .local = "10.0.0.1",
				 .layer = VD_NIC_LAYER_IPV4 };
	REQUIRE(vd_nic_open(&a, &o) == 0);
	o.local = "10.0.0.2";
	REQUIRE(vd_nic_open(&b, &o) == 0);
	uint16_t port = htons(80);
	REQUIRE(vd_nic_port_add(a, IPPROTO_TCP, &port) == 0);

	struct vd_frame f;
	REQUIRE(vd_nic_tx_alloc(b, &f, 1) == 1);
	struct iovec iov[2];
	CHECK_EQ(vd_nic_tx_pieces(b, &f, 40, 8000, iov, 2), 1);
	CHECK((uint8_t *)iov[0].iov_base == (uint8_t *)f.data + 40);
	CHECK_EQ(iov[0].iov_len, 8000);
	CHECK_EQ(vd_nic_tx_pieces(b, &f, 40, 8000, iov, 0), -ENOSPC);
	CHECK_EQ(vd_nic_tx_pieces(b, &f, 40, f.len, iov, 2), -EMSGSIZE);

	uint32_t len = 20 + 20 + 8000;
	uint8_t *p = f.data;
	memset(p, 0, 40);
	p[0] = 0x45;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	p[6] = 0x40;
	p[8] = 64;
	p[9] = IPPROTO_TCP;
	uint32_t src = ip_of("10.0.0.2"), dst = ip_of("10.0.0.1");
	memcpy(p + 12, &src, 4);
	memcpy(p + 16, &dst, 4);
	uint16_t ipc = vd__csum_fold(vd__csum_partial(p, 20, 0));
	memcpy(p + 10, &ipc, 2);
	p[20] = 0x30, p[21] = 0x39;         /* source port 12345 */
	memcpy(p + 22, &port, 2);
	p[32] = 5 << 4;
	p[33] = 0x18;                       /* PSH|ACK */
	for (uint32_t i = 0; i < 8000; i++)
		((uint8_t *)iov[0].iov_base)[i] = pat(i);
	uint8_t ph[12];
	memcpy(ph, p + 12, 8);
	ph[8] = 0, ph[9] = IPPROTO_TCP, ph[10] = (uint8_t)((len - 20) >> 8), ph[11] = (uint8_t)(len - 20);
	uint16_t ps = (uint16_t)~vd__csum_fold(vd__csum_partial(ph, 12, 0));
	memcpy(p + 36, &ps, 2);
	f.len = len;
	f.peer.ip = dst;
	f.peer.port = VD_NIC_TX_L4_CSUM | VD_NIC_TX_PLACED;
	CHECK_EQ(vd_nic_tx_burst(b, &f, 1), 1);
	vd_nic_flush(b);

	struct vd_frame r;
	REQUIRE(vd_nic_rx_burst(a, &r, 1) == 1);
	CHECK_EQ(r.len, len);
	CHECK(tcp_csum_ok(r.data, r.len));
	int same = 1;
	for (uint32_t i = 0; i < 8000; i++)
		same &= ((const uint8_t *)r.data)[40 + i] == pat(i);
	CHECK(same);
	vd_nic_rx_release(a, &r, 1);
	vd_nic_close(a);
	vd_nic_close(b);
	vd_sim_link_free(l);
}

TEST_MAIN(T(layout_matches_descriptors), T(layout_limits), T(sim_contiguous))
