/*
 * loadgen: a small open-loop (fixed-rate) HTTP/1.1 load generator for
 * bench/run's `latency` scenario. wrk2 is not packaged in Debian, and
 * plain wrk is closed-loop (it sends the next request when the previous
 * answer arrives), so its latencies are those of a saturated server.
 *
 *   loadgen -p PORT -r RATE -d SECONDS [-c CONNS] [-w WARMUP] [-u PATH]
 *           [-h HOST] [-t TIMEOUT]
 *
 * Request i is due at t0 + i/RATE whatever happened before (open loop).
 * It goes out on the next idle connection (round robin over CONNS
 * keep-alive connections, re-opened when the server closes them); when
 * none is idle it waits, and its latency still counts from the time it was
 * due, so a server stall shows up in the percentiles instead of slowing the
 * client down ("coordinated omission" corrected, as wrk2 does).
 *
 * Only requests due in [WARMUP, WARMUP + SECONDS) are recorded. At the end
 * the requests still in flight get up to TIMEOUT seconds to finish.
 * Output: one line `BENCHJSON {...}` with requests, errors, achieved rate
 * and latency percentiles in microseconds (from the due time; "svc_"
 * ones from the actual send, for comparison).
 *
 * Build: cc -O2 -o loadgen loadgen.c   (bench/run does it into bench/out/)
 * Linux only (epoll). Responses: Content-Length, chunked (hello-world
 * sized) or read-until-close; "Connection: close" is honoured.
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define FINE_US 100000       /* 1 us buckets up to 100 ms */
#define COARSE_MS 600000     /* then 1 ms buckets up to 10 min */

enum { CLOSED, CONNECTING, IDLE, BUSY };

struct conn {
    int fd;
    int state;
    int served;        /* responses on this socket */
    int64_t due_ns;    /* of the request in flight */
    int64_t sent_ns;
    int64_t index;     /* request number in flight */
    int retried;
    size_t len;
    char buf[BUF];
};

struct hist {
    uint32_t fine[FINE_US];
    uint32_t coarse[COARSE_MS];
    uint64_t n, max;
};

static struct hist lat, svc;
static struct sockaddr_in addr;
static char request[1024];
static size_t request_len;
static int epfd;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void hist_add(struct hist *h, int64_t ns) {
    uint64_t us = ns < 0 ? 0 : (uint64_t)(ns / 1000);
    if (us < FINE_US)
        h->fine[us]++;
    else if (us / 1000 < COARSE_MS)
        h->coarse[us / 1000]++;
    else
        h->coarse[COARSE_MS - 1]++;
    h->n++;
    if (us > h->max) h->max = us;
}

static double hist_pct(const struct hist *h, double p) {
    if (!h->n) return 0;
    uint64_t want = (uint64_t)((p / 100.0) * (double)h->n);
    if (want >= h->n) want = h->n - 1;
    uint64_t seen = 0;
    for (uint64_t i = 0; i < FINE_US; i++) {
        seen += h->fine[i];
        if (seen > want) return (double)i;
    }
    for (uint64_t i = FINE_US / 1000; i < COARSE_MS; i++) {
        seen += h->coarse[i];
        if (seen > want) return (double)i * 1000.0;
    }
    return (double)h->max;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CLOSED;
    c->len = 0;
    c->served = 0;
}

/* Returns 0, or -1 if the connect failed at once. */
static int conn_open(struct conn *c, int idx) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->len = 0;
    c->served = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        conn_close(c);
        return -1;
    }
    c->state = CONNECTING;
    return 0;
}

static int send_request(struct conn *c) {
    ssize_t n = send(c->fd, request, request_len, MSG_NOSIGNAL);
    if (n != (ssize_t)request_len) return -1; /* a 100-byte send on a fresh socket */
    c->sent_ns = now_ns();
    c->state = BUSY;
    return 0;
}

/* Is the response in c->buf complete? 1 yes, 0 not yet; *close_after set. */
static int response_complete(struct conn *c, int eof, int *status, int *close_after) {
    c->buf[c->len] = 0;
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head_len = (size_t)(end - c->buf) + 4;
    *status = 0;
    if (c->len > 12) *status = atoi(c->buf + 9);
    *close_after = strncmp(c->buf, "HTTP/1.0", 8) == 0;
    long content_length = -1;
    int chunked = 0;
    for (char *line = strstr(c->buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (!strncasecmp(line, "content-length:", 15))
            content_length = atol(line + 15);
        else if (!strncasecmp(line, "transfer-encoding:", 18) && strcasestr(line, "chunked") &&
                 strcasestr(line, "chunked") < strstr(line, "\r\n"))
            chunked = 1;
        else if (!strncasecmp(line, "connection:", 11)) {
            char *eol = strstr(line, "\r\n");
            char *cl = strcasestr(line, "close");
            char *ka = strcasestr(line, "keep-alive");
            if (cl && cl < eol) *close_after = 1;
            if (ka && ka < eol) *close_after = 0;
        }
    }
    if (content_length >= 0) return c->len >= head_len + (size_t)content_length;
    if (chunked) return c->len >= head_len + 5 && !memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5);
    if (*status == 204 || *status == 304) return 1;
    *close_after = 1;
    return eof; /* body until close */
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/";
    int port = 0, conns = 16, opt;
    double rate = 0, seconds = 10, warmup = 1, timeout = 5;
    while ((opt = getopt(argc, argv, "p:r:d:c:w:u:h:t:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'u': path = optarg; break;
        case 'h': host = optarg; break;
        case 't': timeout = atof(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen -p PORT -r RATE -d SECONDS [-c CONNS] [-w WARMUP] "
                            "[-u PATH] [-h HOST] [-t TIMEOUT]\n");
            return 2;
        }
    }
    if (port <= 0 || rate <= 0 || conns <= 0 || seconds <= 0) {
        fprintf(stderr, "loadgen: -p PORT and -r RATE are required, and must be positive\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: -h takes an IPv4 address\n");
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: edge-bench-loadgen\r\n\r\n",
                                   path, host, port);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    if (!cs) die("calloc");
    for (int i = 0; i < conns; i++) {
        cs[i].fd = -1;
        conn_close(&cs[i]);
    }

    const int64_t step = (int64_t)(1e9 / rate);
    const int64_t t0 = now_ns() + 10 * 1000000; /* start in 10 ms */
    const int64_t rec_from = t0 + (int64_t)(warmup * 1e9);
    const int64_t rec_to = rec_from + (int64_t)(seconds * 1e9);
    const int64_t hard_end = rec_to + (int64_t)(timeout * 1e9);
    const int64_t timeout_ns = (int64_t)(timeout * 1e9);
    int64_t next = 0;  /* next request number to send */
    int64_t due_total = (rec_to - t0 + step - 1) / step; /* requests due before rec_to */
    uint64_t done = 0, errors = 0, status_err = 0, timeouts = 0, connect_err = 0, retries = 0;
    uint64_t recorded_sent = 0, reconnects = 0;
    int64_t max_lag = 0; /* worst due -> sent delay */
    int rr = 0, busy = 0;
    struct epoll_event evs[256];
    /* Pending retry: a request whose connection closed before any byte of an
       answer on a reused socket (the server's keep-alive close racing us). */
    int64_t retry_due = -1, retry_index = -1;

    for (;;) {
        int64_t now = now_ns();
        /* Dispatch every due request we can. */
        while ((retry_index >= 0 || (next < due_total && t0 + next * step <= now))) {
            int found = -1;
            for (int k = 0; k < conns; k++) {
                int i = (rr + k) % conns;
                if (cs[i].state == IDLE || cs[i].state == CLOSED) {
                    found = i;
                    break;
                }
            }
            if (found < 0) break; /* all busy: the due requests wait (and their latency grows) */
            rr = (found + 1) % conns;
            struct conn *c = &cs[found];
            if (retry_index >= 0) {
                c->index = retry_index;
                c->due_ns = retry_due;
                c->retried = 1;
                retry_index = -1;
            } else {
                c->index = next;
                c->due_ns = t0 + next * step;
                c->retried = 0;
                next++;
                if (c->due_ns >= rec_from && c->due_ns < rec_to) recorded_sent++;
            }
            if (c->state == CLOSED) {
                if (conn_open(c, found) < 0) {
                    connect_err++;
                    errors++;
                    continue;
                }
                reconnects++;
                busy++;
                c->state = CONNECTING; /* request goes out on EPOLLOUT */
                continue;
            }
            if (send_request(c) < 0) {
                conn_close(c);
                if (conn_open(c, found) < 0) {
                    connect_err++;
                    errors++;
                    continue;
                }
                reconnects++;
                busy++;
                continue;
            }
            busy++;
            int64_t lag = c->sent_ns - c->due_ns;
            if (lag > max_lag) max_lag = lag;
        }
        if (next >= due_total && busy == 0 && retry_index < 0) break;
        if (now >= hard_end) break;

        /* Sleep until the next due time or an event (ns precision). */
        int64_t wake = hard_end;
        if (next < due_total) wake = t0 + next * step;
        for (int i = 0; i < conns; i++)
            if (cs[i].state == BUSY || cs[i].state == CONNECTING)
                if (cs[i].due_ns + timeout_ns < wake) wake = cs[i].due_ns + timeout_ns;
        int64_t wait = wake - now;
        if (wait < 0) wait = 0;
        struct timespec ts = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
        int n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
        if (n < 0 && errno == ENOSYS) /* kernel < 5.11: ms precision */
            n = epoll_wait(epfd, evs, 256, (int)((wait + 999999) / 1000000));
        if (n < 0 && errno != EINTR) die("epoll_wait");
        now = now_ns();
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            struct conn *c = &cs[i];
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (evs[e].events & (EPOLLERR | EPOLLHUP))) {
                    connect_err++;
                    errors++;
                    busy--;
                    conn_close(c);
                    continue;
                }
                if (!(evs[e].events & EPOLLOUT)) continue;
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                if (send_request(c) < 0) {
                    errors++;
                    busy--;
                    conn_close(c);
                    continue;
                }
                int64_t lag = c->sent_ns - c->due_ns;
                if (lag > max_lag) max_lag = lag;
                continue;
            }
            if (c->state == IDLE) { /* the server closed an idle keep-alive connection */
                char tmp[512];
                ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
                if (r <= 0 && !(r < 0 && errno == EAGAIN)) conn_close(c);
                continue;
            }
            if (c->state != BUSY) continue;
            int eof = 0;
            for (;;) {
                if (c->len >= BUF - 1) break;
                ssize_t r = recv(c->fd, c->buf + c->len, BUF - 1 - c->len, 0);
                if (r > 0) {
                    c->len += (size_t)r;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) eof = 1;
                break;
            }
            int status = 0, close_after = 0;
            int complete = response_complete(c, eof, &status, &close_after);
            if (!complete && c->len >= BUF - 1) { /* too big for us: count as error */
                errors++;
                busy--;
                conn_close(c);
                continue;
            }
            if (!complete && !eof) continue;
            busy--;
            if (!complete) { /* EOF or reset before a whole answer */
                if (c->len == 0 && c->served > 0 && !c->retried) {
                    retry_due = c->due_ns; /* keep-alive race: retry once */
                    retry_index = c->index;
                    retries++;
                } else {
                    errors++;
                }
                conn_close(c);
                continue;
            }
            int64_t t = now_ns();
            if (c->due_ns >= rec_from && c->due_ns < rec_to) {
                done++;
                hist_add(&lat, t - c->due_ns);
                hist_add(&svc, t - c->sent_ns);
                if (status < 200 || status >= 400) status_err++;
            }
            c->served++;
            c->len = 0;
            if (close_after || eof)
                conn_close(c);
            else
                c->state = IDLE;
        }
        /* Per-request timeout. */
        for (int i = 0; i < conns; i++) {
            struct conn *c = &cs[i];
            if ((c->state == BUSY || c->state == CONNECTING) && now - c->due_ns > timeout_ns) {
                timeouts++;
                errors++;
                busy--;
                conn_close(c);
            }
        }
    }
    /* Whatever is still in flight at the hard end timed out. */
    for (int i = 0; i < conns; i++)
        if (cs[i].state == BUSY || cs[i].state == CONNECTING) {
            timeouts++;
            errors++;
        }
    uint64_t unsent = (uint64_t)(due_total - next);
    printf("BENCHJSON {\"rate\":%.1f,\"seconds\":%.3f,\"conns\":%d,\"due\":%llu,\"requests\":%llu,"
           "\"achieved_rps\":%.1f,\"errors\":%llu,\"status_err\":%llu,\"timeouts\":%llu,"
           "\"connect_err\":%llu,\"retries\":%llu,\"reconnects\":%llu,\"unsent\":%llu,"
           "\"max_send_lag_us\":%.0f,"
           "\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"p999\":%.0f,\"max\":%llu,"
           "\"svc_p50\":%.0f,\"svc_p99\":%.0f,\"svc_p999\":%.0f}\n",
           rate, seconds, conns, (unsigned long long)recorded_sent, (unsigned long long)done,
           (double)done / seconds, (unsigned long long)errors, (unsigned long long)status_err,
           (unsigned long long)timeouts, (unsigned long long)connect_err,
           (unsigned long long)retries, (unsigned long long)reconnects,
           (unsigned long long)unsent, (double)max_lag / 1000.0,
           hist_pct(&lat, 50), hist_pct(&lat, 90), hist_pct(&lat, 99), hist_pct(&lat, 99.9),
           (unsigned long long)lat.max, hist_pct(&svc, 50), hist_pct(&svc, 99),
           hist_pct(&svc, 99.9));
    return 0;
}
