/* The streams of bench/callbacks_flood.py in C: the same open-loop pacing as the Python
 * stream (request i is due at start + i/rate whatever happened before; its latency runs from
 * that scheduled time), over keep-alive HTTP/1.1 connections bound to the given sources.
 *
 * Why C: on one 2-core machine the load generator takes its CPU from the server it measures.
 * The Python streams took 0.4-0.9 of the two cores at 500 + 5,000 requests/s (0.28 for the
 * genuine 500/s alone); this one about 0.07 a core per 2,500/s, so what is measured is the
 * server, not the generator.
 *
 * Usage: flood_stream REQUESTS HOST PORT RATE COUNT START_AT CONNECTIONS BINDS TIMEOUT RESULT
 *   REQUESTS  u32 n, then n × (u32 length, bytes) — little-endian, cycled
 *   START_AT  Unix time (float) of request 0;  BINDS  comma-separated source addresses
 *   RESULT    text: "sent_s cpu_s lag_p99_ms lag_max_ms errors reconnects", then a line per answered
 *             request: "i latency_s status body_head_hex" (the body's first 16 bytes)
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int busy;           /* a request is out on this connection */
    long index;         /* which one */
    double scheduled;   /* when it was due (monotonic seconds) */
    double sent_at;     /* when it went out: the timeout runs from here */
    size_t sent;        /* bytes of it written so far */
    char buf[65536];
    size_t have;
    const char *bind;
} conn_t;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static unsigned char **reqs;
static uint32_t *req_len;
static uint32_t n_reqs;
static struct sockaddr_in target;
static int epfd;

static int open_conn(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_in src = {0};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, c->bind, &src.sin_addr);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    c->fd = fd;
    c->have = 0;
    return 0;
}

static void close_conn(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

/* a complete response in c->buf: its length (0: not yet), status and whether it closes */
static size_t response_done(conn_t *c, int *status, int *closes, size_t *body_at) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    *status = atoi(c->buf + 9);
    *closes = 0;
    long length = 0;
    for (char *line = c->buf; line < end;) {
        char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        if (eol == NULL) break;
        if (strncasecmp(line, "content-length:", 15) == 0) length = atol(line + 15);
        if (strncasecmp(line, "connection:", 11) == 0) {
            char *v = line + 11;
            while (*v == ' ') v++;
            if (strncasecmp(v, "close", 5) == 0) *closes = 1;
        }
        line = eol + 2;
    }
    if (c->have < head + (size_t)length) return 0;
    *body_at = head;
    return head + (size_t)length;
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: %s REQUESTS HOST PORT RATE COUNT START_AT CONNECTIONS BINDS TIMEOUT RESULT\n",
                argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL || fread(&n_reqs, 4, 1, f) != 1 || n_reqs == 0) {
        fprintf(stderr, "flood_stream: cannot read requests from %s\n", argv[1]);
        return 2;
    }
    reqs = calloc(n_reqs, sizeof *reqs);
    req_len = calloc(n_reqs, sizeof *req_len);
    for (uint32_t k = 0; k < n_reqs; k++) {
        if (fread(&req_len[k], 4, 1, f) != 1) return 2;
        reqs[k] = malloc(req_len[k]);
        if (fread(reqs[k], 1, req_len[k], f) != req_len[k]) return 2;
    }
    fclose(f);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &target.sin_addr);
    double rate = atof(argv[4]);
    long count = atol(argv[5]);
    double start_at = atof(argv[6]);
    int n_conns = atoi(argv[7]);
    double timeout = atof(argv[9]);

    char *binds[64];
    int n_binds = 0;
    for (char *tok = strtok(argv[8], ","); tok && n_binds < 64; tok = strtok(NULL, ",")) binds[n_binds++] = tok;

    epfd = epoll_create1(0);
    conn_t *conns = calloc((size_t)n_conns, sizeof *conns);
    for (int k = 0; k < n_conns; k++) {
        conns[k].fd = -1;
        conns[k].bind = binds[k % n_binds];
        if (open_conn(&conns[k]) < 0) { perror("flood_stream: connect"); return 1; }
    }
    /* results: latency and status per request index; pending requests wait in a FIFO */
    double *latency = malloc(sizeof(double) * (size_t)count);
    int *status = calloc((size_t)count, sizeof(int));
    char *answered = calloc((size_t)count, 1);
    unsigned char *heads = calloc((size_t)count, 16);      /* the first 16 bytes of each body */
    unsigned char *head_len = calloc((size_t)count, 1);
    double *lags = malloc(sizeof(double) * (size_t)count);
    long *fifo = malloc(sizeof(long) * (size_t)count);
    long head = 0, tail = 0, issued = 0, done = 0, errors = 0, reconnects = 0;
    double t0 = now_mono() + (start_at - now_wall());
    double sent_s = 0;
    struct epoll_event events[256];

    while (done < count) {
        double now = now_mono();
        if (now >= t0) {
            long due = (long)((now - t0) * rate) + 1;
            if (due > count) due = count;
            while (issued < due) {
                lags[issued] = now - (t0 + issued / rate);
                fifo[tail++] = issued++;
            }
            if (issued == count && sent_s == 0) sent_s = now - t0;
        }
        /* hand waiting requests to idle connections; time out stuck ones */
        for (int k = 0; k < n_conns; k++) {
            conn_t *c = &conns[k];
            if (c->busy && now - c->sent_at > timeout) {
                latency[c->index] = now - c->scheduled;
                status[c->index] = 0;
                answered[c->index] = 1;
                done++;
                errors++;
                c->busy = 0;
                close_conn(c);
                reconnects++;
                open_conn(c);
            }
            if (!c->busy && c->fd >= 0 && head < tail) {
                long i = fifo[head++];
                c->busy = 1;
                c->index = i;
                c->scheduled = t0 + i / rate;
                c->sent = 0;
                c->sent_at = now;
                c->have = 0;
                const unsigned char *r = reqs[i % n_reqs];
                ssize_t w = send(c->fd, r, req_len[i % n_reqs], MSG_NOSIGNAL);
                if (w > 0) c->sent = (size_t)w;
            }
        }
        double next = issued < count ? t0 + issued / rate : now + 0.005;
        /* whole milliseconds, rounded up: at thousands a second the next request is always
         * less than 1 ms away, and a zero timeout would spin the CPU this engine is meant to
         * leave to the server (a request sent up to 1 ms late is measured from its due time) */
        double gap = next - now_mono();
        int wait_ms = gap <= 0 ? 0 : (int)(gap * 1000) + 1;
        if (head < tail && gap <= 0) wait_ms = 1; /* waiting for a connection to come free */
        if (wait_ms > 5) wait_ms = 5;
        int n = epoll_wait(epfd, events, 256, wait_ms);
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            if (c->fd < 0) continue;
            if (c->busy && c->sent < req_len[c->index % n_reqs]) {
                const unsigned char *r = reqs[c->index % n_reqs];
                ssize_t w = send(c->fd, r + c->sent, req_len[c->index % n_reqs] - c->sent, MSG_NOSIGNAL);
                if (w > 0) c->sent += (size_t)w;
            }
            int failed = (events[e].events & (EPOLLERR | EPOLLHUP)) != 0;
            for (;;) {
                if (c->have == sizeof c->buf) c->have = 0; /* an oversized answer: keep the tail */
                ssize_t r = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
                if (r > 0) { c->have += (size_t)r; continue; }
                if (r == 0) failed = 1;
                else if (errno != EAGAIN && errno != EWOULDBLOCK) failed = 1;
                break;
            }
            int st = 0, closes = 0;
            size_t body_at = 0, whole;
            if (c->busy && (whole = response_done(c, &st, &closes, &body_at)) != 0) {
                latency[c->index] = now_mono() - c->scheduled;
                status[c->index] = st;
                size_t n_head = whole - body_at < 16 ? whole - body_at : 16;
                memcpy(heads + 16 * c->index, c->buf + body_at, n_head);
                head_len[c->index] = (unsigned char)n_head;
                answered[c->index] = 1;
                done++;
                c->busy = 0;
                c->have = 0;
                if (closes) failed = 1;
            }
            if (failed) {
                if (c->busy) { /* lost with the connection: counted as unanswered */
                    latency[c->index] = now_mono() - c->scheduled;
                    status[c->index] = 0;
                    answered[c->index] = 1;
                    done++;
                    errors++;
                    c->busy = 0;
                }
                close_conn(c);
                reconnects++;
                open_conn(c);
            }
        }
    }
    if (sent_s == 0) sent_s = now_mono() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    qsort(lags, (size_t)count, sizeof(double), cmp_double);
    FILE *out = fopen(argv[10], "w");
    if (out == NULL) { perror("flood_stream: result"); return 1; }
    fprintf(out, "%.6f %.6f %.3f %.3f %ld %ld\n", sent_s, cpu, 1000 * lags[(long)(0.99 * (double)(count - 1))],
            1000 * lags[count - 1], errors, reconnects);
    for (long i = 0; i < count; i++)
        if (answered[i]) {
            fprintf(out, "%ld %.6f %d ", i, latency[i], status[i]);
            for (int b = 0; b < head_len[i]; b++) fprintf(out, "%02x", heads[16 * i + b]);
            fputc('\n', out);
        }
    fclose(out);
    return 0;
}
