/*
 * cecho: a reference C echo server for measuring `toby echo` from outside.
 *
 * Raw bytes, no framing: whatever arrives goes back, so a TobyTcp client
 * sees its own frames echoed. One epoll loop per thread, each with its own
 * SO_REUSEPORT listener (the kernel spreads connections over them), and
 * non-blocking sockets: a read of up to 256 KiB, written back at once; what
 * the socket does not take waits in the connection's buffer with EPOLLOUT,
 * and reading that connection pauses until it drained (back-pressure, as a
 * TobyTCP server does). Prints "listening on 127.0.0.1:PORT" once it
 * accepts; runs until killed.
 *
 *   cc -std=c11 -O2 -pthread -o cecho Scripts/cecho.c
 *   ./cecho [-p PORT] [-t THREADS]       (PORT 0: any; THREADS default 2)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_SIZE (256 * 1024)

typedef struct conn {
    int fd;
    size_t pending; /* bytes of buf not yet written back */
    size_t sent;    /* of those, already written */
    unsigned char buf[BUFFER_SIZE];
} conn;

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void closeconn(int ep, conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Writes what is pending; returns 0 when drained, 1 when the socket is
 * full, -1 on error. */
static int flush(conn *c) {
    while (c->sent < c->pending) {
        ssize_t n = send(c->fd, c->buf + c->sent, c->pending - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        return -1;
    }
    c->pending = c->sent = 0;
    return 0;
}

static void set_interest(int ep, conn *c, unsigned events) {
    struct epoll_event e = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void *run(void *arg) {
    int lfd = *(int *)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return NULL;
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return NULL;
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *made = malloc(sizeof *made);
                    if (made == NULL) {
                        close(fd);
                        continue;
                    }
                    made->fd = fd;
                    made->pending = made->sent = 0;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = made};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) {
                        close(fd);
                        free(made);
                    }
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                int rc = flush(c);
                if (rc < 0) {
                    closeconn(ep, c);
                    continue;
                }
                if (rc == 0) set_interest(ep, c, EPOLLIN);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = recv(c->fd, c->buf, BUFFER_SIZE, 0);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    closeconn(ep, c);
                    continue;
                }
                if (got < 0) continue;
                c->pending = (size_t)got;
                c->sent = 0;
                int rc = flush(c);
                if (rc < 0) closeconn(ep, c);
                else if (rc == 1) set_interest(ep, c, EPOLLOUT);
            }
        }
    }
}

int main(int argc, char **argv) {
    int port = 0, threads = 2, opt;
    while ((opt = getopt(argc, argv, "p:t:")) != -1) {
        if (opt == 'p') port = atoi(optarg);
        else if (opt == 't') threads = atoi(optarg);
        else {
            fprintf(stderr, "usage: cecho [-p PORT] [-t THREADS]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 256) threads = 2;
    int *fds = calloc((size_t)threads, sizeof *fds);
    if (fds == NULL) return 1;
    fds[0] = listen_on(port);
    if (fds[0] < 0) {
        perror("cecho: listen");
        return 1;
    }
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fds[0], (struct sockaddr *)&a, &len);
    int bound = ntohs(a.sin_port);
    for (int t = 1; t < threads; t++) {
        fds[t] = listen_on(bound);
        if (fds[t] < 0) {
            perror("cecho: listen");
            return 1;
        }
    }
    printf("listening on 127.0.0.1:%d\n", bound);
    fflush(stdout);
    pthread_t tid;
    for (int t = 1; t < threads; t++) pthread_create(&tid, NULL, run, &fds[t]);
    run(&fds[0]);
    return 0;
}
