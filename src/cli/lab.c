/* SPDX-License-Identifier: MIT */
/*
 * `viaduct lab`: N test hosts on one machine, as network namespaces joined by veth.
 *
 *   NAME-h0 .. NAME-h<N-1>   one per host; eth0 = 10.99.0.<i+1>/24, lo up, IPv6 off (no DAD, router or
 *                            MLD chatter on the links being measured)
 *   N = 2                    eth0 of h0 and eth0 of h1 are the two ends of one veth pair
 *   N > 2                    NAME-sw holds bridge br0; host i's eth0 is paired with port hI of br0
 *   ref0 (h0 <-> h1 only)    a second veth pair, 10.98.0.1/24 and 10.98.0.2/24, same MTU and queues and no
 *                            viaductd: the link the benchmarks measure their references on
 *   --netem (any N)          every host's eth0 is paired with port pI in NAME-sw, and ref0 of h0/h1 with
 *                            ports r0/r1; no bridge: the impairment relay (`viaduct lab relay`, relay.c)
 *                            forwards between p0..pN-1 and between r0 and r1, impairing every frame. This
 *                            kernel has no sch_netem, and a qdisc would not see AF_XDP traffic anyway
 *                            (copy-mode TX skips the qdisc layer, XDP RX runs before tc). Without --netem
 *                            the links are the plain ones above, so benchmarks never pay for the relay.
 *
 * Every veth end has --queues RX and TX queues and --mtu. The veths are created directly inside their
 * namespaces (the netlink request names the target namespace of each end), so no interface ever exists in
 * the root namespace and two labs never collide on an interface name.
 *
 * viaductd runs in each host (the command line agreed in docs/design.md), its files in
 * /run/viaduct/lab/NAME-hI/. Everything is done by running `ip` with argv arrays (no shell); a
 * failed step prints the command that failed, and a failed `up` removes what it had made.
 *
 * `down` needs nothing but the names: it works after anything inside crashed, and on a lab that is half
 * made or already gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/sockios.h>

#include "cli/cli.h"
#include "cli/netem_args.h"
#include "cli/relay.h"
#include "cli/run_cmd.h"
#include "ctl/proto.h"

#define LAB_NETNS_DIR "/run/netns"
#define LAB_RUN_DIR "/run/viaduct/lab"
#define LAB_NAME_MAX 8
#define LAB_MAX_HOSTS 64
#define LAB_MAX_QUEUES 64
#define LAB_DAEMON_START_MS 15000
#define LAB_STOP_WAIT_MS 2000
#define LAB_CARRIER_WAIT_MS 3000
#define LAB_RELAY_START_MS 5000

struct lab {
	char name[LAB_NAME_MAX + 1];
	unsigned hosts;
	unsigned mtu;
	unsigned queues;
	const char *netem;   /* netem arguments, NULL for none: then no relay */
	struct vd__netem ne; /* netem parsed (by cmd_up, before anything is made) */
	const char *group;   /* --group for viaductd, NULL for its default */
	int daemon;          /* start viaductd in each host */
};

/* ---- names and paths ------------------------------------------------------------------------------ */

/* [A-Za-z0-9]{1,8}: short, and nothing a path or an `ip` argument could misread. */
static int lab_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > LAB_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

static void host_ns(char *buf, size_t cap, const char *lab, unsigned i)
{
	snprintf(buf, cap, "%s-h%u", lab, i);
}

static void switch_ns(char *buf, size_t cap, const char *lab)
{
	snprintf(buf, cap, "%s-sw", lab);
}

/* /run/viaduct/lab/<ns>/<file> (file "" for the directory). */
static void run_path(char *buf, size_t cap, const char *ns, const char *file)
{
	snprintf(buf, cap, "%s/%s%s%s", LAB_RUN_DIR, ns, file[0] ? "/" : "", file);
}

/*
 * Whether ns ("X-hN" or "X-sw") is a namespace of lab X. Returns the host number, -2 for the switch, -1
 * if it is not one of the lab's.
 */
static int lab_ns_member(const char *ns, const char *lab)
{
	size_t n = strlen(lab);
	if (strncmp(ns, lab, n) != 0 || ns[n] != '-')
		return -1;
	const char *r = ns + n + 1;
	if (strcmp(r, "sw") == 0)
		return -2;
	if (r[0] != 'h' || r[1] < '0' || r[1] > '9')
		return -1;
	char *end;
	long h = strtol(r + 1, &end, 10);
	if (*end || h < 0 || h >= LAB_MAX_HOSTS)
		return -1;
	return (int)h;
}

/* ---- running commands ----------------------------------------------------------------------------- */

/* Runs argv; on failure prints it with the reason. Returns 0 or -1. */
static int run(char *const argv[])
{
	char cmd[512];
	int r = vd__run(argv, NULL);
	if (r == 0)
		return 0;
	vd__run_format(argv, cmd, sizeof(cmd));
	if (r > 0)
		fprintf(stderr, "viaduct lab: `%s` failed (exit status %d)\n", cmd, r);
	else
		fprintf(stderr, "viaduct lab: `%s` failed: %s\n", cmd, strerror(-r));
	return -1;
}

#define RUN(...) run((char *const[]){ __VA_ARGS__, NULL })

/* ---- namespaces and processes ----------------------------------------------------------------------- */

static int ns_exists(const char *ns)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", LAB_NETNS_DIR, ns);
	return access(p, F_OK) == 0;
}

/* Calls fn(ns, arg) for each namespace of lab (hosts and switch). Returns how many there were. */
static unsigned for_each_lab_ns(const char *lab, void (*fn)(const char *ns, void *arg), void *arg)
{
	DIR *d = opendir(LAB_NETNS_DIR);
	unsigned n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (lab_ns_member(e->d_name, lab) == -1)
			continue;
		n++;
		if (fn)
			fn(e->d_name, arg);
	}
	closedir(d);
	return n;
}

/* Whether process pid is inside namespace ns (same nsfs inode as /run/netns/ns). */
static int pid_in_ns(pid_t pid, const struct stat *ns_st)
{
	char p[64];
	struct stat st;
	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	return stat(p, &st) == 0 && st.st_dev == ns_st->st_dev && st.st_ino == ns_st->st_ino;
}

/* Waits up to ms for pid to end (it need not be our child: a pidfd polls readable when it exits). */
static int wait_gone(pid_t pid, int ms)
{
	int fd = (int)pidfd_open(pid, 0);
	if (fd < 0)
		return errno == ESRCH ? 0 : -errno;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, ms);
	close(fd);
	return r > 0 ? 0 : -ETIMEDOUT;
}

/*
 * SIGTERM to the process named by pidfile file of ns (viaductd in a host, the relay in the switch), and
 * only if it is inside ns; SIGKILL after 2 s. SIGTERM first lets viaductd detach its XDP program and the
 * relay log its counters.
 */
static void stop_pidfile(const char *ns, const struct stat *ns_st, const char *file)
{
	char p[PATH_MAX];
	run_path(p, sizeof(p), ns, file);
	FILE *f = fopen(p, "r");
	if (!f)
		return;
	int pid = 0;
	int ok = fscanf(f, "%d", &pid) == 1;
	fclose(f);
	/* A stale pidfile (viaductd was killed) may name a pid reused by anything: check the namespace. */
	if (!ok || pid <= 1 || !pid_in_ns(pid, ns_st))
		return;
	if (kill(pid, SIGTERM) == 0 && wait_gone(pid, LAB_STOP_WAIT_MS) == -ETIMEDOUT) {
		fprintf(stderr, "viaduct lab: %s %d in %s did not stop in %d ms: killing it\n", file, pid, ns,
			LAB_STOP_WAIT_MS);
		kill(pid, SIGKILL);
		wait_gone(pid, LAB_STOP_WAIT_MS);
	}
}

/*
 * SIGKILL to every process inside ns (what `ip netns pids` lists), then waits for them to be gone so the
 * namespace and its interfaces really go away when it is deleted. Never kills the caller itself.
 */
static void kill_ns_pids(const char *ns, const struct stat *ns_st)
{
	pid_t pids[1024];
	unsigned n = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) && n < sizeof(pids) / sizeof(pids[0])) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 1 || pid == getpid() || !pid_in_ns((pid_t)pid, ns_st))
			continue;
		if (kill((pid_t)pid, SIGKILL) == 0)
			pids[n++] = (pid_t)pid;
	}
	closedir(d);
	for (unsigned i = 0; i < n; i++)
		if (wait_gone(pids[i], LAB_STOP_WAIT_MS) == -ETIMEDOUT)
			fprintf(stderr, "viaduct lab: process %d in %s survived SIGKILL\n", (int)pids[i], ns);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_tree(const char *path)
{
	if (nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		fprintf(stderr, "viaduct lab: cannot remove %s: %s\n", path, strerror(errno));
}

/* Tears one namespace down: daemon, processes, namespace (which takes its interfaces), run dir. */
static void teardown_ns(const char *ns, void *arg)
{
	(void)arg;
	char p[PATH_MAX];
	struct stat ns_st;
	snprintf(p, sizeof(p), "%s/%s", LAB_NETNS_DIR, ns);
	if (stat(p, &ns_st) == 0) {
		stop_pidfile(ns, &ns_st, "viaductd.pid");
		stop_pidfile(ns, &ns_st, "relay.pid");
		kill_ns_pids(ns, &ns_st);
	}
	RUN("ip", "netns", "delete", (char *)ns);
	run_path(p, sizeof(p), ns, "");
	rm_tree(p);
}

/* Removes run dirs of the lab whose namespace is already gone (a crash between the two). */
static void remove_stale_run_dirs(const char *lab)
{
	DIR *d = opendir(LAB_RUN_DIR);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[PATH_MAX];
		if (lab_ns_member(e->d_name, lab) == -1)
			continue;
		run_path(p, sizeof(p), e->d_name, "");
		rm_tree(p);
	}
	closedir(d);
}

static void lab_teardown(const char *lab)
{
	for_each_lab_ns(lab, teardown_ns, NULL);
	remove_stale_run_dirs(lab);
}

/* ---- building a lab: one function per step ---------------------------------------------------------- */

/*
 * Runs fn(arg) in a child process that has entered network namespace ns (setns only changes the calling
 * thread's namespace, and we do not want ours changed). Returns 0 if fn returned 0, else -EIO or -errno.
 */
static int in_netns(const char *ns, int (*fn)(const void *arg), const void *arg)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", LAB_NETNS_DIR, ns);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int nsfd = open(p, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)
			_exit(1);
		_exit(fn(arg) ? 1 : 0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

struct sysctl_write {
	const char *file, *value;
};

static int write_sysctl(const void *arg)
{
	const struct sysctl_write *w = arg;
	int fd = open(w->file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1; /* no IPv6 in this kernel: nothing to turn off */
	return write(fd, w->value, strlen(w->value)) == (ssize_t)strlen(w->value) ? 0 : -1;
}

/* Writes value to a /proc/sys file as seen from inside namespace ns (net sysctls are per namespace). */
static int ns_sysctl(const char *ns, const char *file, const char *value)
{
	const struct sysctl_write w = { file, value };
	return in_netns(ns, write_sysctl, &w);
}

static int make_ns(const char *ns)
{
	if (RUN("ip", "netns", "add", (char *)ns))
		return -1;
	/* Before any link exists, so the links inherit "default". */
	if (ns_sysctl(ns, "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") ||
	    ns_sysctl(ns, "/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")) {
		fprintf(stderr, "viaduct lab: cannot turn IPv6 off in %s\n", ns);
		return -1;
	}
	return RUN("ip", "-n", (char *)ns, "link", "set", "lo", "up");
}

/* A veth pair with end a_if in namespace a and b_if in b, created in place with the lab's MTU/queues. */
static int make_veth(const struct lab *l, const char *a, const char *a_if, const char *b, const char *b_if)
{
	char q[16], mtu[16];
	snprintf(q, sizeof(q), "%u", l->queues);
	snprintf(mtu, sizeof(mtu), "%u", l->mtu);
	return RUN("ip", "link", "add", (char *)a_if, "netns", (char *)a, "mtu", mtu, "numtxqueues", q,
		   "numrxqueues", q, "type", "veth", "peer", "name", (char *)b_if, "netns", (char *)b, "mtu", mtu,
		   "numtxqueues", q, "numrxqueues", q);
}

static int make_switch(const struct lab *l)
{
	char sw[32], mtu[16];
	switch_ns(sw, sizeof(sw), l->name);
	snprintf(mtu, sizeof(mtu), "%u", l->mtu);
	if (make_ns(sw))
		return -1;
	/* STP off (the default, said explicitly): ports forward at once, nothing but the hosts' frames. */
	if (RUN("ip", "-n", sw, "link", "add", "br0", "mtu", mtu, "type", "bridge", "stp_state", "0"))
		return -1;
	return RUN("ip", "-n", sw, "link", "set", "br0", "up");
}

/* Host i's eth0 and the switch's port hI, enslaved to br0. */
static int attach_to_switch(const struct lab *l, unsigned i)
{
	char sw[32], ns[32], port[16];
	switch_ns(sw, sizeof(sw), l->name);
	host_ns(ns, sizeof(ns), l->name, i);
	snprintf(port, sizeof(port), "h%u", i);
	if (make_veth(l, ns, "eth0", sw, port))
		return -1;
	if (RUN("ip", "-n", sw, "link", "set", port, "master", "br0"))
		return -1;
	return RUN("ip", "-n", sw, "link", "set", port, "up");
}

/*
 * The --netem topology: host i's eth0 <-> port pI of NAME-sw, ref0 of h0/h1 <-> r0/r1, every switch port
 * up and in no bridge (the relay forwards).
 */
static int make_relay_links(const struct lab *l)
{
	char sw[32], ns[32], port[16];
	switch_ns(sw, sizeof(sw), l->name);
	if (make_ns(sw))
		return -1;
	for (unsigned i = 0; i < l->hosts + 2; i++) {
		int ref = i >= l->hosts;
		unsigned h = ref ? i - l->hosts : i;
		host_ns(ns, sizeof(ns), l->name, h);
		snprintf(port, sizeof(port), "%c%u", ref ? 'r' : 'p', h);
		if (make_veth(l, ns, ref ? "ref0" : "eth0", sw, port) ||
		    RUN("ip", "-n", sw, "link", "set", port, "up"))
			return -1;
	}
	return 0;
}

static int make_links(const struct lab *l)
{
	char h0[32], h1[32];
	host_ns(h0, sizeof(h0), l->name, 0);
	host_ns(h1, sizeof(h1), l->name, 1);
	if (l->netem)
		return make_relay_links(l);
	if (l->hosts == 2) {
		if (make_veth(l, h0, "eth0", h1, "eth0"))
			return -1;
	} else {
		if (make_switch(l))
			return -1;
		for (unsigned i = 0; i < l->hosts; i++)
			if (attach_to_switch(l, i))
				return -1;
	}
	return make_veth(l, h0, "ref0", h1, "ref0");
}

static int address_if(const char *ns, const char *ifname, const char *addr)
{
	if (RUN("ip", "-n", (char *)ns, "addr", "add", (char *)addr, "dev", (char *)ifname))
		return -1;
	return RUN("ip", "-n", (char *)ns, "link", "set", (char *)ifname, "up");
}

static int address_hosts(const struct lab *l)
{
	for (unsigned i = 0; i < l->hosts; i++) {
		char ns[32], addr[32];
		host_ns(ns, sizeof(ns), l->name, i);
		snprintf(addr, sizeof(addr), "10.99.0.%u/24", i + 1);
		if (address_if(ns, "eth0", addr))
			return -1;
		if (i < 2) {
			snprintf(addr, sizeof(addr), "10.98.0.%u/24", i + 1);
			if (address_if(ns, "ref0", addr))
				return -1;
		}
	}
	return 0;
}

/*
 * Turns TX checksum offload off on ifname in ns (ETHTOOL_STXCSUM; TSO, which needs it, goes with it).
 * Through the relay a frame is read by a packet socket and sent again as plain bytes: a frame the host
 * left with CHECKSUM_PARTIAL would arrive with its checksum never filled in, and a GSO super-packet
 * would exceed the MTU. With offload off every frame leaves the host whole and MTU-sized; what the relay
 * sends arrives without checksum state, so the receiver verifies it and drops a corrupted frame, as after
 * a real wire.
 */
static int tx_csum_off_here(const void *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ethtool_value v = { .cmd = ETHTOOL_STXCSUM, .data = 0 };
	struct ifreq r = { 0 };
	snprintf(r.ifr_name, sizeof(r.ifr_name), "%s", (const char *)ifname);
	r.ifr_data = (char *)&v;
	return s >= 0 && ioctl(s, SIOCETHTOOL, &r) == 0 ? 0 : -1;
}

static int tx_csum_off(const char *ns, const char *ifname)
{
	if (in_netns(ns, tx_csum_off_here, ifname) == 0)
		return 0;
	fprintf(stderr, "viaduct lab: cannot turn TX checksum offload off on %s in %s\n", ifname, ns);
	return -1;
}

/* The relay's log: its start-up line, its errors and its counters (SIGUSR1, exit). */
static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		fprintf(stderr, "viaduct lab: %s: %s\n", path, strerror(errno));
	return fd;
}

static void print_log_tail(const char *path);

/*
 * Runs argv (a `--daemon` program that returns once it serves) with its stderr appended to log; on failure
 * says which command failed and shows the end of the log. what/where name it for the message.
 */
static int start_logged(char **argv, const char *what, const char *where, const char *log, int timeout_ms)
{
	char cmd[1024];
	int logfd = open_log(log);
	if (logfd < 0)
		return -1;
	struct vd__run_opts o = { .timeout_ms = timeout_ms, .stderr_fd = logfd };
	int r = vd__run(argv, &o);
	close(logfd);
	if (r == 0)
		return 0;
	vd__run_format(argv, cmd, sizeof(cmd));
	fprintf(stderr, "viaduct lab: %s did not start in %s: `%s` %s %d%s\n", what, where, cmd,
		r > 0 ? "exited with" : "failed:", r > 0 ? r : -r, r > 0 ? "" : " (-errno)");
	print_log_tail(log);
	return -1;
}


/*
 * With --netem: host offloads off, then `viaduct lab relay --daemon` inside NAME-sw (this same binary),
 * which returns once every port's socket is open; its pid in /run/viaduct/lab/NAME-sw/relay.pid.
 */
static int start_relay(const struct lab *l)
{
	char sw[32], dir[PATH_MAX], pid[PATH_MAX], log[PATH_MAX], seed[32];
	char ports[LAB_MAX_HOSTS * 5], self[PATH_MAX];

	if (!l->netem)
		return 0;
	for (unsigned i = 0; i < l->hosts; i++) {
		char ns[32];
		host_ns(ns, sizeof(ns), l->name, i);
		if (tx_csum_off(ns, "eth0") || (i < 2 && tx_csum_off(ns, "ref0")))
			return -1;
	}
	switch_ns(sw, sizeof(sw), l->name);
	run_path(dir, sizeof(dir), sw, "");
	run_path(pid, sizeof(pid), sw, "relay.pid");
	run_path(log, sizeof(log), sw, "relay.log");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "viaduct lab: mkdir %s: %s\n", dir, strerror(errno));
		return -1;
	}
	size_t off = 0;
	for (unsigned i = 0; i < l->hosts; i++)
		off += (size_t)snprintf(ports + off, sizeof(ports) - off, "%sp%u", i ? "," : "", i);
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)l->ne.seed);
	snprintf(self, sizeof(self), "%s", vd__cli_self());
	char *argv[] = { "ip", "netns", "exec", sw, self, "lab", "relay", "--group", ports, "--group", "r0,r1",
			 "--netem", (char *)l->netem, "--seed", seed, "--pidfile", pid, "--daemon", NULL };
	return start_logged(argv, "the netem relay", sw, log, LAB_RELAY_START_MS);
}

/*
 * Waits (bounded) until eth0 and, on h0/h1, ref0 of host i report carrier (IFF_RUNNING): a veth's
 * carrier comes up asynchronously after both ends are up, and a benchmark started at once would lose its
 * first frames. Runs in a child that enters the namespace, since an ioctl socket belongs to its creator's.
 */
static int carrier_here(const void *arg)
{
	unsigned nifs = *(const unsigned *)arg;
	const char *ifs[] = { "eth0", "ref0" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	for (int tries = 0; s >= 0 && tries < LAB_CARRIER_WAIT_MS / 10; tries++) {
		unsigned up = 0;
		for (unsigned k = 0; k < nifs; k++) {
			struct ifreq r = { 0 };
			snprintf(r.ifr_name, sizeof(r.ifr_name), "%s", ifs[k]);
			up += ioctl(s, SIOCGIFFLAGS, &r) == 0 && (r.ifr_flags & IFF_RUNNING);
		}
		if (up == nifs)
			return 0;
		usleep(10000);
	}
	return -1;
}

static int wait_carrier(const struct lab *l, unsigned i)
{
	char ns[32];
	unsigned nifs = i < 2 ? 2 : 1; /* ref0 exists on h0 and h1 only */
	host_ns(ns, sizeof(ns), l->name, i);
	if (in_netns(ns, carrier_here, &nifs) == 0)
		return 0;
	fprintf(stderr, "viaduct lab: links of %s have no carrier after %d ms\n", ns, LAB_CARRIER_WAIT_MS);
	return -1;
}

static int wait_links(const struct lab *l)
{
	for (unsigned i = 0; i < l->hosts; i++)
		if (wait_carrier(l, i))
			return -1;
	return 0;
}

/* $VIADUCTD, else viaductd next to this viaduct binary, else "viaductd" for a PATH lookup. */
static const char *viaductd_path(char *buf, size_t cap)
{
	const char *env = getenv("VIADUCTD");
	if (env && env[0])
		return env;
	char self[PATH_MAX];
	snprintf(self, sizeof(self), "%s", vd__cli_self());
	snprintf(buf, cap, "%s/viaductd", dirname(self));
	return access(buf, X_OK) == 0 ? buf : "viaductd";
}

/* Prints the end of a log file (where viaductd explains why it did not start). */
static void print_log_tail(const char *path)
{
	char buf[2048];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "--- %s ---\n%s%s", path, buf, buf[n - 1] == '\n' ? "" : "\n");
	}
}

/*
 * viaductd --daemon inside host i. Its parent exits 0 only once the control socket listens, so when this
 * returns 0 the host is ready. Its stdout/stderr go to its log file, never to ours: the daemon keeps them,
 * and a caller reading our output through a pipe would otherwise wait for the daemon to exit.
 */
static int start_daemon(const struct lab *l, unsigned i)
{
	char ns[32], dir[PATH_MAX], sock[PATH_MAX], pid[PATH_MAX], log[PATH_MAX], bin[PATH_MAX];
	host_ns(ns, sizeof(ns), l->name, i);
	run_path(dir, sizeof(dir), ns, "");
	run_path(sock, sizeof(sock), ns, "viaductd.sock");
	run_path(pid, sizeof(pid), ns, "viaductd.pid");
	run_path(log, sizeof(log), ns, "viaductd.log");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "viaduct lab: mkdir %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char *argv[] = { "ip", "netns", "exec", ns, (char *)viaductd_path(bin, sizeof(bin)), "--iface", "eth0",
			 "--socket", sock, "--pidfile", pid, "--log", log, "--daemon",
			 l->group ? "--group" : NULL, (char *)l->group, NULL };
	if (start_logged(argv, "viaductd", ns, log, LAB_DAEMON_START_MS))
		return -1;
	struct stat st;
	if (stat(sock, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "viaduct lab: viaductd in %s reported success but %s is not a socket\n", ns, sock);
		return -1;
	}
	return 0;
}

static int start_daemons(const struct lab *l)
{
	if (!l->daemon)
		return 0;
	for (unsigned i = 0; i < l->hosts; i++)
		if (start_daemon(l, i))
			return -1;
	return 0;
}

static int make_run_dirs(void)
{
	const char *dirs[] = { "/run/viaduct", LAB_RUN_DIR };
	for (unsigned i = 0; i < 2; i++) {
		if (mkdir(dirs[i], 0755) < 0 && errno != EEXIST) {
			fprintf(stderr, "viaduct lab: mkdir %s: %s\n", dirs[i], strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int make_hosts(const struct lab *l, int *created)
{
	for (unsigned i = 0; i < l->hosts; i++) {
		char ns[32];
		host_ns(ns, sizeof(ns), l->name, i);
		if (make_ns(ns))
			return -1;
		*created = 1;
	}
	return 0;
}

static void print_summary(const struct lab *l)
{
	printf("lab %s up: %u hosts (", l->name, l->hosts);
	for (unsigned i = 0; i < l->hosts; i++)
		printf("%sh%u 10.99.0.%u", i ? ", " : "", i, i + 1);
	if (l->netem)
		printf("), netem relay in %s-sw (\"%s\", on eth0 and ref0 links)", l->name, l->netem);
	else
		printf("), %s%s%s", l->hosts == 2 ? "point to point" : "bridge in ", l->hosts == 2 ? "" : l->name,
		       l->hosts == 2 ? "" : "-sw");
	printf(", mtu %u, %u queues, ref0 10.98.0.1-2, viaductd %s\n", l->mtu, l->queues,
	       l->daemon ? "running" : "not started");
}

static int lab_up(const struct lab *l)
{
	if (for_each_lab_ns(l->name, NULL, NULL) > 0) {
		fprintf(stderr, "viaduct lab: lab %s is already up (`viaduct lab down --name %s` first)\n", l->name,
			l->name);
		return 1;
	}
	int created = 0;
	if (make_run_dirs() == 0 && make_hosts(l, &created) == 0 && make_links(l) == 0 &&
	    address_hosts(l) == 0 && wait_links(l) == 0 && start_relay(l) == 0 && start_daemons(l) == 0) {
		print_summary(l);
		return 0;
	}
	if (created) {
		fprintf(stderr, "viaduct lab: up failed, removing lab %s\n", l->name);
		lab_teardown(l->name);
	}
	return 1;
}

/* ---- subcommands ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct lab up [--name NAME] [--hosts N] [--mtu M] [--queues Q] [--netem \"ARGS\"]\n"
		"                      [--group GROUP] [--no-daemon]\n"
		"       viaduct lab down [--name NAME]\n"
		"       viaduct lab exec [--name NAME] hI -- CMD [ARGS...]\n"
		"       viaduct lab list\n"
		"       viaduct lab relay ...   (internal: the netem relay that `up --netem` starts)\n"
		"\n"
		"Test hosts on this machine (root): network namespaces NAME-h0..NAME-h<N-1> joined by veth\n"
		"(point to point for 2 hosts, a bridge in NAME-sw for more); eth0 of host i is 10.99.0.<i+1>/24;\n"
		"h0 and h1 also share a reference link ref0 (10.98.0.1/24, 10.98.0.2/24) without viaductd.\n"
		"  --name NAME     [A-Za-z0-9]{1,%d}, default vdlab\n"
		"  --hosts N       2..%d, default 2\n"
		"  --mtu M         MTU of every link, default 1500\n"
		"  --queues Q      RX and TX queues of every veth, 1..%d, default 8 (each viaduct endpoint owns one queue)\n"
		"  --netem ARGS    impair every link (each host's eth0, and ref0) in both directions, with\n"
		"                  tc-netem(8) syntax, e.g. \"delay 1ms 0.2ms loss 1%%\". This kernel has no\n"
		"                  sch_netem (and a qdisc would not see AF_XDP traffic), so the lab then links\n"
		"                  every host to NAME-sw, where a userspace relay forwards and impairs each frame\n"
		"                  once per link crossing (log and counters: /run/viaduct/lab/NAME-sw/relay.log).\n"
		"                  Host TX checksum offload is turned off so frames cross whole and a corrupted\n"
		"                  frame fails its checksum at the receiver, as on a wire. ARGS:\n"
		"                    delay TIME [JITTER]   TIME +- JITTER, uniform (\"distribution uniform\" only)\n"
		"                    loss [random] PCT     drop PCT%% of frames\n"
		"                    duplicate PCT         send PCT%% twice (the copy impaired on its own)\n"
		"                    corrupt PCT           flip one random bit past the Ethernet header of PCT%%\n"
		"                    reorder PCT           with delay: PCT%% sent at once, the rest delayed\n"
		"                    limit N               frames held delayed, default 1000, drop-tail beyond\n"
		"                    seed N                PRNG seed (default fixed: runs are reproducible)\n"
		"                  TIME: ns|us|ms|s, bare number = ms; PCT: 0..100, optional %%. Correlation\n"
		"                  values are accepted and ignored (decisions are independent); loss state|gemodel,\n"
		"                  ecn, gap, rate, slot are refused. Without --netem no relay runs.\n"
		"  --group GROUP   group allowed on each viaductd's socket (viaductd --group)\n"
		"  --no-daemon     do not start viaductd\n"
		"exec runs CMD in host hI with VIADUCT_SOCKET set to that host's viaductd, and exits with its status.\n"
		"down removes the lab's namespaces, interfaces, processes and /run/viaduct/lab/NAME-*; a lab that\n"
		"is not there is not an error.\n",
		LAB_NAME_MAX, LAB_MAX_HOSTS, LAB_MAX_QUEUES);
}

enum { OPT_NAME = 1, OPT_HOSTS, OPT_MTU, OPT_QUEUES, OPT_NETEM, OPT_GROUP, OPT_NO_DAEMON, OPT_HELP };

static int parse_uint(const char *opt, const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
		fprintf(stderr, "viaduct lab: %s: '%s' is not a number in %u..%u\n", opt, s, lo, hi);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/*
 * Parses the options of `lab <action>`; argv[0] is the action. allowed: which options this action takes
 * (bit per OPT_*). Stops at the first non-option (exec's host). Returns 0, 1 for --help, -1 on error.
 */
static int parse_opts(int argc, char **argv, unsigned allowed, struct lab *l)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, OPT_NAME },     { "hosts", required_argument, NULL, OPT_HOSTS },
		{ "mtu", required_argument, NULL, OPT_MTU },       { "queues", required_argument, NULL, OPT_QUEUES },
		{ "netem", required_argument, NULL, OPT_NETEM },   { "group", required_argument, NULL, OPT_GROUP },
		{ "no-daemon", no_argument, NULL, OPT_NO_DAEMON }, { "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'h' || c == OPT_HELP)
			return 1;
		if (c == '?' || c == ':' || !(allowed & (1u << c))) {
			fprintf(stderr, "viaduct lab %s: unknown or misused option '%s'\n", argv[0], argv[optind - 1]);
			return -1;
		}
		int bad = 0;
		switch (c) {
		case OPT_NAME:
			if (!lab_name_ok(optarg)) {
				fprintf(stderr, "viaduct lab: --name: '%s' is not [A-Za-z0-9]{1,%d}\n", optarg, LAB_NAME_MAX);
				bad = 1;
			} else {
				snprintf(l->name, sizeof(l->name), "%s", optarg);
			}
			break;
		case OPT_HOSTS: bad = parse_uint("--hosts", optarg, 2, LAB_MAX_HOSTS, &l->hosts); break;
		case OPT_MTU: bad = parse_uint("--mtu", optarg, 68, 65535, &l->mtu); break;
		case OPT_QUEUES: bad = parse_uint("--queues", optarg, 1, LAB_MAX_QUEUES, &l->queues); break;
		case OPT_NETEM: l->netem = optarg[0] ? optarg : NULL; break;
		case OPT_GROUP: l->group = optarg; break;
		case OPT_NO_DAEMON: l->daemon = 0; break;
		}
		if (bad)
			return -1;
	}
	return 0;
}

static int need_root(void)
{
	if (geteuid() == 0)
		return 0;
	fprintf(stderr, "viaduct lab: needs root (network namespaces)\n");
	return -1;
}

#define BIT(x) (1u << (x))

static int cmd_up(int argc, char **argv, struct lab *l)
{
	int r = parse_opts(argc, argv,
			   BIT(OPT_NAME) | BIT(OPT_HOSTS) | BIT(OPT_MTU) | BIT(OPT_QUEUES) | BIT(OPT_NETEM) |
				   BIT(OPT_GROUP) | BIT(OPT_NO_DAEMON),
			   l);
	if (r)
		return r > 0 ? (usage(stdout), 0) : 2;
	if (optind != argc) {
		fprintf(stderr, "viaduct lab up: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* Before anything is made: a typo in --netem must not leave half a lab. */
	char err[256];
	if (l->netem && vd__netem_parse(l->netem, &l->ne, err, sizeof(err))) {
		fprintf(stderr, "viaduct lab up: --netem: %s\n", err);
		return 2;
	}
	if (l->netem && l->ne.correlations)
		fprintf(stderr, "viaduct lab up: --netem: correlation values are ignored (independent decisions)\n");
	return need_root() ? 1 : lab_up(l);
}

static int cmd_down(int argc, char **argv, struct lab *l)
{
	int r = parse_opts(argc, argv, BIT(OPT_NAME), l);
	if (r)
		return r > 0 ? (usage(stdout), 0) : 2;
	if (optind != argc) {
		fprintf(stderr, "viaduct lab down: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (need_root())
		return 1;
	lab_teardown(l->name);
	if (for_each_lab_ns(l->name, NULL, NULL) > 0) {
		fprintf(stderr, "viaduct lab: lab %s: some namespaces could not be removed\n", l->name);
		return 1;
	}
	return 0;
}

/* Host argument of exec: "hI" (or "NAME-hI"). Returns I or -1. */
static int parse_host(const char *lab, const char *s)
{
	char ns[64];
	snprintf(ns, sizeof(ns), "%s-%s", lab, s);
	int h = lab_ns_member(ns, lab);
	if (h < 0)
		h = lab_ns_member(s, lab);
	return h;
}

static int cmd_exec(int argc, char **argv, struct lab *l)
{
	int r = parse_opts(argc, argv, BIT(OPT_NAME), l);
	if (r)
		return r > 0 ? (usage(stdout), 0) : 2;
	if (optind >= argc) {
		fprintf(stderr, "viaduct lab exec: which host? (viaduct lab exec [--name NAME] hI -- CMD...)\n");
		return 2;
	}
	int h = parse_host(l->name, argv[optind]);
	if (h < 0) {
		fprintf(stderr, "viaduct lab exec: '%s' is not a host name (h0, h1, ...)\n", argv[optind]);
		return 2;
	}
	int first = optind + 1;
	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	if (first >= argc) {
		fprintf(stderr, "viaduct lab exec: no command to run\n");
		return 2;
	}
	char ns[32], sock[PATH_MAX], host[16];
	host_ns(ns, sizeof(ns), l->name, (unsigned)h);
	if (!ns_exists(ns)) {
		fprintf(stderr, "viaduct lab exec: no host %s (is lab %s up?)\n", ns, l->name);
		return 1;
	}
	run_path(sock, sizeof(sock), ns, "viaductd.sock");
	snprintf(host, sizeof(host), "h%d", h);
	if (setenv(VD_CTL_ENV_PATH, sock, 1) || setenv("VIADUCT_LAB", l->name, 1) ||
	    setenv("VIADUCT_HOST", host, 1)) {
		perror("viaduct lab exec: setenv");
		return 1;
	}
	/* ip netns exec: setns plus a private /sys for the namespace; it execs CMD in place, so the exit
	 * status of this process is CMD's. */
	char **nargv = calloc((size_t)(argc - first) + 5, sizeof(char *));
	if (!nargv) {
		perror("viaduct lab exec");
		return 1;
	}
	nargv[0] = "ip";
	nargv[1] = "netns";
	nargv[2] = "exec";
	nargv[3] = ns;
	for (int i = first; i < argc; i++)
		nargv[4 + i - first] = argv[i];
	fflush(NULL);
	execvp("ip", nargv);
	fprintf(stderr, "viaduct lab exec: cannot run ip: %s\n", strerror(errno));
	free(nargv);
	return 127;
}

/* One line per lab: name, hosts, daemons running. */
struct lab_row {
	char name[LAB_NAME_MAX + 1];
	unsigned hosts, daemons, sw;
};

static int daemon_alive(const char *ns)
{
	char p[PATH_MAX];
	run_path(p, sizeof(p), ns, "viaductd.pid");
	FILE *f = fopen(p, "r");
	int pid = 0;
	if (!f)
		return 0;
	int ok = fscanf(f, "%d", &pid) == 1;
	fclose(f);
	return ok && pid > 1 && kill(pid, 0) == 0;
}

static int cmd_list(int argc, char **argv)
{
	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "viaduct lab list: unexpected argument '%s'\n", argv[1]);
		return 2;
	}
	struct lab_row rows[64];
	unsigned n = 0;
	DIR *d = opendir(LAB_NETNS_DIR);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		const char *dash = strrchr(e->d_name, '-');
		char name[LAB_NAME_MAX + 1];
		if (!dash || dash == e->d_name || (size_t)(dash - e->d_name) > LAB_NAME_MAX)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(dash - e->d_name), e->d_name);
		int h = lab_ns_member(e->d_name, name);
		if (!lab_name_ok(name) || h == -1)
			continue;
		unsigned i = 0;
		while (i < n && strcmp(rows[i].name, name) != 0)
			i++;
		if (i == n) {
			if (n == sizeof(rows) / sizeof(rows[0]))
				continue;
			memset(&rows[n], 0, sizeof(rows[n]));
			snprintf(rows[n].name, sizeof(rows[n].name), "%s", name);
			n++;
		}
		if (h == -2) {
			char p[PATH_MAX];
			run_path(p, sizeof(p), e->d_name, "relay.pid");
			rows[i].sw = access(p, F_OK) == 0 ? 2 : 1;
		} else {
			rows[i].hosts++;
			rows[i].daemons += (unsigned)daemon_alive(e->d_name);
		}
	}
	if (d)
		closedir(d);
	if (n == 0)
		return 0;
	printf("%-8s %5s %8s %s\n", "NAME", "HOSTS", "VIADUCTD", "LINKS");
	for (unsigned i = 0; i < n; i++)
		printf("%-8s %5u %5u/%-2u %s\n", rows[i].name, rows[i].hosts, rows[i].daemons, rows[i].hosts,
		       rows[i].sw == 2 ? "netem relay" : rows[i].sw ? "bridge" : "point to point");
	return 0;
}

int vd__cli_lab(int argc, char **argv)
{
	struct lab l = { .name = "vdlab", .hosts = 2, .mtu = 1500, .queues = 8, .daemon = 1 };

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *action = argv[1];
	if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0 || strcmp(action, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(action, "up") == 0)
		return cmd_up(argc - 1, argv + 1, &l);
	if (strcmp(action, "down") == 0)
		return cmd_down(argc - 1, argv + 1, &l);
	if (strcmp(action, "exec") == 0)
		return cmd_exec(argc - 1, argv + 1, &l);
	if (strcmp(action, "list") == 0)
		return cmd_list(argc - 1, argv + 1);
	if (strcmp(action, "relay") == 0)
		return vd__lab_relay(argc - 1, argv + 1);
	fprintf(stderr, "viaduct lab: unknown action '%s' (up, down, exec, list)\n\n", action);
	usage(stderr);
	return 2;
}
