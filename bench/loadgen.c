/*
 * loadgen: a Postfix-like socketmap load generator for the tlspolicy benchmark.
 *
 * Postfix's smtp(8) processes each keep one persistent connection to the policy server and
 * send one request at a time, waiting for the reply (postfix/src/global/dict_sockmap.c).
 * This program opens C such connections from one epoll thread, so it needs one core at most
 * and measures its own CPU time to prove it was not the bottleneck.
 *
 * Requests are netstrings "NAME KEY" (postfix/proto/socketmap_table); keys come from a file,
 * one per line, handed out in file order and wrapped around.  The run ends when -n requests
 * are answered or -d seconds have passed, whichever comes first; a request still unanswered
 * -t milliseconds after it was sent counts as a timeout and its connection is reopened.
 *
 * Output: one JSON line on stdout with qps, latency percentiles (microseconds), answer counts
 * by kind, errors and getrusage CPU time.  With -r FILE every reply is written as
 * "KEY<TAB>REPLY" lines, for checking answers after a cold pass.
 *
 * With -R a connection that breaks (EOF, reset) with a request outstanding gets that request
 * sent again once on a new connection, as Postfix's dict_sockmap does ("We retry a broken
 * connection only once"); such retries are counted, not errors.  Used through restarts.
 *
 * With -L it is instead the calibration server: it listens on -h/-p for -d seconds and answers
 * every request at once with one fixed OK reply, so the benchmark can show what the generator,
 * loopback TCP and the machine cost by themselves (the floor under any real server).
 *
 * Build: gcc -O2 -Wall -Wextra -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPLY 100000      /* Postfix accepts replies up to 100000 bytes (socketmap_table) */
#define MAX_REQUEST 10000     /* Postfix sends requests up to 10000 bytes (socketmap_table) */
#define MAX_CONNECTIONS 4096
#define MAX_RECONNECTS 1000   /* give up on the server after this many reopened connections */

enum kind { K_OK, K_NOTFOUND, K_TEMP, K_PERM, K_TIMEOUT_REPLY, K_OTHER, K_KINDS };
static const char *KIND_NAMES[K_KINDS] = {"OK", "NOTFOUND", "TEMP", "PERM", "TIMEOUT", "other"};

struct conn {
    int fd;
    int busy;              /* a request is outstanding */
    int retried;           /* -R: the outstanding request was already re-sent once */
    size_t key_index;
    double sent_at;        /* monotonic seconds */
    char out[MAX_REQUEST + 32];
    size_t out_len, out_off;
    char in[MAX_REPLY + 32];
    size_t in_len;
};

static struct {
    const char *host, *map, *keyfile, *replies_path;
    int port, connections, timeout_ms, retry;
    long count;
    double duration;
} opt = {"127.0.0.1", "QUERY", NULL, NULL, 0, 1, 30000, 0, 0, 10.0};

static char **keys;
static size_t nkeys;
static long issued, answered, timeouts, errors, reconnects, retried;
static long kinds[K_KINDS];
static uint32_t *lat;      /* microseconds, one per answer */
static size_t lat_cap;
static FILE *replies;
static int epfd;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void load_keys(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    size_t cap = 1024;
    keys = malloc(cap * sizeof *keys);
    char *line = NULL;
    size_t n = 0;
    ssize_t len;
    while ((len = getline(&line, &n, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (nkeys == cap) {
            cap *= 2;
            keys = realloc(keys, cap * sizeof *keys);
            if (!keys) die("realloc");
        }
        keys[nkeys++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (nkeys == 0) {
        fprintf(stderr, "loadgen: no keys in %s\n", path);
        exit(2);
    }
}

static int open_conn(struct conn *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", opt.host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {  /* blocking: loopback is instant */
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    c->fd = fd;
    c->busy = 0;
    c->in_len = 0;
    return 0;
}

static void close_conn(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->busy = 0;
}

/* A failed or timed-out connection is reopened (bounded by MAX_RECONNECTS over the run). */
static void reopen(struct conn *c) {
    close_conn(c);
    if (reconnects >= MAX_RECONNECTS) return;
    reconnects++;
    if (open_conn(c) < 0) errors++;
}

static void flush_out(struct conn *c);

/* A connection broke.  With -R an outstanding request is re-sent once on a new connection. */
static void broken(struct conn *c) {
    if (opt.retry && c->busy && !c->retried) {
        size_t len = c->out_len;
        close_conn(c);
        if (open_conn(c) < 0) {
            errors++;
            return;
        }
        retried++;
        c->busy = 1;
        c->retried = 1;
        c->out_len = len;
        c->out_off = 0;
        c->in_len = 0;
        flush_out(c);
        return;
    }
    if (c->busy) errors++;
    reopen(c);
}

static void want_write(struct conn *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_write(c, 1);
                return;
            }
            broken(c);
            return;
        }
        c->out_off += (size_t)w;
    }
}

static int can_issue(double deadline) {
    if (opt.count > 0 && issued >= opt.count) return 0;
    return now_s() < deadline;
}

static void issue(struct conn *c) {
    size_t index = (size_t)issued % nkeys;
    const char *key = keys[index];
    size_t payload = strlen(opt.map) + 1 + strlen(key);
    if (payload > MAX_REQUEST) {
        fprintf(stderr, "loadgen: key too long: %s\n", key);
        exit(2);
    }
    int n = snprintf(c->out, sizeof c->out, "%zu:%s %s,", payload, opt.map, key);
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->key_index = index;
    c->busy = 1;
    c->in_len = 0;
    issued++;
    c->sent_at = now_s();
    flush_out(c);
}

static void record(struct conn *c, const char *data, size_t len) {
    double took = now_s() - c->sent_at;
    enum kind k = K_OTHER;
    if (len >= 3 && memcmp(data, "OK ", 3) == 0) k = K_OK;
    else if (len >= 8 && memcmp(data, "NOTFOUND", 8) == 0) k = K_NOTFOUND;
    else if (len >= 4 && memcmp(data, "TEMP", 4) == 0) k = K_TEMP;
    else if (len >= 4 && memcmp(data, "PERM", 4) == 0) k = K_PERM;
    else if (len >= 7 && memcmp(data, "TIMEOUT", 7) == 0) k = K_TIMEOUT_REPLY;
    kinds[k]++;
    if (answered == (long)lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) die("realloc");
    }
    double us = took * 1e6;
    lat[answered++] = us > 4e9 ? 4000000000u : (uint32_t)us;
    if (replies) fprintf(replies, "%s\t%.*s\n", keys[c->key_index], (int)len, data);
    c->busy = 0;
    c->retried = 0;
}

/* Parse complete netstrings in c->in; returns -1 on a framing error. */
static int take_replies(struct conn *c) {
    size_t pos = 0;
    while (pos < c->in_len) {
        size_t i = pos, len = 0;
        while (i < c->in_len && c->in[i] >= '0' && c->in[i] <= '9' && i - pos < 7) {
            len = len * 10 + (size_t)(c->in[i] - '0');
            i++;
        }
        if (i == c->in_len) break;                 /* length not complete yet */
        if (c->in[i] != ':' || i == pos || len > MAX_REPLY) return -1;
        if (c->in_len < i + 1 + len + 1) break;    /* payload not complete yet */
        if (c->in[i + 1 + len] != ',') return -1;
        if (!c->busy) return -1;                   /* a reply nobody asked for */
        record(c, c->in + i + 1, len);
        pos = i + 1 + len + 1;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

static void on_readable(struct conn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            if (take_replies(c) < 0) {
                errors++;
                reopen(c);
                return;
            }
            if (c->in_len == sizeof c->in) {
                errors++;
                reopen(c);
                return;
            }
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r < 0 && errno == EINTR) continue;
        broken(c);                                   /* closed with a request outstanding? */
        return;
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t pct(double p) {
    if (answered == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(answered - 1) + 0.5);
    return lat[i];
}

#define FIXED_REPLY "OK secure match=mx1.example.net:mx2.example.net servername=hostname"
#define MAX_FDS 65536

struct peer {
    char buf[MAX_REQUEST + 32];
    size_t len;
};

/* The calibration server (-L): one epoll thread, a fixed reply per complete request. */
static int respond(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) die("inet_pton");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) die("listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    static struct peer *peers[MAX_FDS];
    char reply[128];
    int reply_len = snprintf(reply, sizeof reply, "%zu:%s,", strlen(FIXED_REPLY), FIXED_REPLY);
    double stop = now_s() + opt.duration;
    struct epoll_event events[256];
    while (now_s() < stop) {
        int n = epoll_wait(epfd, events, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAX_FDS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (!peers[c] && !(peers[c] = malloc(sizeof *peers[c]))) die("malloc");
                    peers[c]->len = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            struct peer *p = peers[fd];
            ssize_t r = recv(fd, p->buf + p->len, sizeof p->buf - p->len, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                continue;
            }
            p->len += (size_t)r;
            size_t pos = 0;
            for (;;) {  /* answer every complete netstring "LEN:...," */
                char *colon = memchr(p->buf + pos, ':', p->len - pos);
                if (!colon) break;
                size_t len = strtoul(p->buf + pos, NULL, 10);
                size_t end = (size_t)(colon - p->buf) + 1 + len;
                if (end >= p->len) break;
                if (send(fd, reply, (size_t)reply_len, MSG_NOSIGNAL) < 0) break;
                pos = end + 1;
            }
            memmove(p->buf, p->buf + pos, p->len - pos);
            p->len -= pos;
            if (p->len == sizeof p->buf) p->len = 0;  /* garbage: drop it */
        }
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen -p PORT -k KEYFILE [-h ADDR] [-m MAP] [-c CONNECTIONS]\n"
            "               [-n COUNT] [-d SECONDS] [-t TIMEOUT_MS] [-r REPLIES_FILE] [-R]\n"
            "       loadgen -L -p PORT [-h ADDR] [-d SECONDS]   (calibration server)\n");
    exit(2);
}

int main(int argc, char **argv) {
    int ch, serve = 0;
    while ((ch = getopt(argc, argv, "LRh:p:m:k:c:n:d:t:r:")) != -1) {
        switch (ch) {
        case 'L': serve = 1; break;
        case 'R': opt.retry = 1; break;
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'm': opt.map = optarg; break;
        case 'k': opt.keyfile = optarg; break;
        case 'c': opt.connections = atoi(optarg); break;
        case 'n': opt.count = atol(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 't': opt.timeout_ms = atoi(optarg); break;
        case 'r': opt.replies_path = optarg; break;
        default: usage();
        }
    }
    if (serve) {
        if (!opt.port || opt.duration <= 0) usage();
        return respond();
    }
    if (!opt.port || !opt.keyfile || opt.connections < 1 || opt.connections > MAX_CONNECTIONS ||
        opt.duration <= 0 || opt.timeout_ms < 1)
        usage();
    load_keys(opt.keyfile);
    if (opt.replies_path && !(replies = fopen(opt.replies_path, "w"))) die(opt.replies_path);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)opt.connections, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < opt.connections; i++) {
        conns[i].fd = -1;
        if (open_conn(&conns[i]) < 0) die("connect");
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double start = now_s();
    double deadline = start + opt.duration;
    double timeout_s = opt.timeout_ms / 1000.0;
    /* Requests still out at the deadline get up to their timeout to finish. */
    double hard_stop = deadline + timeout_s;
    for (int i = 0; i < opt.connections; i++)
        if (can_issue(deadline)) issue(&conns[i]);

    struct epoll_event events[256];
    for (;;) {
        int live = 0, busy = 0;
        double t = now_s();
        for (int i = 0; i < opt.connections; i++) {
            struct conn *c = &conns[i];
            if (c->fd < 0) continue;
            live++;
            if (c->busy && t - c->sent_at > timeout_s) {
                timeouts++;
                reopen(c);
                if (c->fd < 0) continue;
            }
            if (!c->busy && can_issue(deadline)) issue(c);
            if (c->busy) busy++;
        }
        if (busy == 0 || live == 0 || t > hard_stop) break;
        int n = epoll_wait(epfd, events, 256, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (events[i].events & EPOLLOUT) {
                flush_out(c);
                if (c->fd >= 0 && c->out_off == c->out_len) want_write(c, 0);
            }
            if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                on_readable(c);
                if (c->fd >= 0 && !c->busy && can_issue(deadline)) issue(c);
            }
        }
    }
    double wall = now_s() - start;
    getrusage(RUSAGE_SELF, &ru1);
    long unfinished = 0;
    for (int i = 0; i < opt.connections; i++) {
        if (conns[i].fd >= 0 && conns[i].busy) unfinished++;
        close_conn(&conns[i]);
    }
    if (replies) fclose(replies);

    double user = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    double sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(lat, (size_t)answered, sizeof *lat, cmp_u32);
    double sum = 0;
    for (long i = 0; i < answered; i++) sum += lat[i];
    printf("{\"connections\": %d, \"issued\": %ld, \"answered\": %ld, \"wall_s\": %.4f, "
           "\"qps\": %.1f, \"lat_us\": {\"mean\": %.1f, \"p50\": %u, \"p90\": %u, \"p99\": %u, "
           "\"max\": %u}, \"counts\": {",
           opt.connections, issued, answered, wall, wall > 0 ? (double)answered / wall : 0.0,
           answered ? sum / (double)answered : 0.0, pct(50), pct(90), pct(99), pct(100));
    for (int k = 0; k < K_KINDS; k++)
        printf("%s\"%s\": %ld", k ? ", " : "", KIND_NAMES[k], kinds[k]);
    printf("}, \"timeouts\": %ld, \"errors\": %ld, \"unfinished\": %ld, \"reconnects\": %ld, "
           "\"retried\": %ld, \"cpu_user_s\": %.4f, \"cpu_sys_s\": %.4f, \"cpu_share\": %.4f}\n",
           timeouts, errors, unfinished, reconnects, retried, user, sys,
           wall > 0 ? (user + sys) / wall : 0);
    return 0;
}
