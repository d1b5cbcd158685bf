/* responder: a lab pod's workload. Answers every TCP connection and every UDP datagram on the
 * given ports with one line, the pod's identity, then (TCP) closes.
 *
 *   responder [--identity NS/NAME] [--tcp P1,P2,...] [--udp P1,...] [--echo-peer]
 *
 * What calico-lab's probes expect of a pod (calico_lab.probe: a TCP peer must accept and send
 * something; a UDP datagram must be answered), in the calico-lab/responder image next to busybox.
 * The identity defaults to the host name (a pod's name); --echo-peer answers the client's address
 * instead. One process, poll(2) over every socket: no fork per client. Exits 0 on SIGTERM (it is
 * PID 1 in its container, where the default action would be to ignore the signal). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_SOCKETS 64

static struct pollfd fds[MAX_SOCKETS];
static int is_udp[MAX_SOCKETS];
static int nfds;

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void die(const char *what, const char *arg) {
    fprintf(stderr, "responder: %s %s: %s\n", what, arg, strerror(errno));
    exit(1);
}

static void listen_on(int udp, const char *port_text) {
    char *end;
    long port = strtol(port_text, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "responder: %s is not a port number\n", port_text);
        exit(2);
    }
    if (nfds == MAX_SOCKETS) {
        fprintf(stderr, "responder: more than %d ports\n", MAX_SOCKETS);
        exit(2);
    }
    int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (fd < 0) die("socket for port", port_text);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind port", port_text);
    if (!udp && listen(fd, 128) < 0) die("listen on port", port_text);
    fds[nfds].fd = fd;
    fds[nfds].events = POLLIN;
    is_udp[nfds++] = udp;
}

static void listen_list(int udp, char *list) {
    for (char *port = strtok(list, ","); port != NULL; port = strtok(NULL, ",")) {
        listen_on(udp, port);
    }
}

static size_t reply(char *out, size_t size, const char *identity, int echo_peer,
                    const struct sockaddr_in *peer) {
    char addr[INET_ADDRSTRLEN] = "?";
    if (echo_peer) inet_ntop(AF_INET, &peer->sin_addr, addr, sizeof addr);
    int n = snprintf(out, size, "%s\n", echo_peer ? addr : identity);
    return n < 0 ? 0 : ((size_t)n < size ? (size_t)n : size - 1);
}

static void serve(int i, const char *identity, int echo_peer) {
    char line[300], buf[2048];
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    if (is_udp[i]) {
        if (recvfrom(fds[i].fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len) < 0) return;
        size_t n = reply(line, sizeof line, identity, echo_peer, &peer);
        sendto(fds[i].fd, line, n, 0, (struct sockaddr *)&peer, len);
        return;
    }
    int conn = accept(fds[i].fd, (struct sockaddr *)&peer, &len);
    if (conn < 0) return;
    struct timeval limit = {.tv_sec = 1};
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    size_t n = reply(line, sizeof line, identity, echo_peer, &peer);
    if (write(conn, line, n) < 0) {
        /* the client went away: nothing to do */
    }
    close(conn);
}

int main(int argc, char **argv) {
    char host[256] = "pod";
    const char *identity = NULL;
    int echo_peer = 0;
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (strcmp(argv[i], "--identity") == 0 && more) {
            identity = argv[++i];
        } else if (strcmp(argv[i], "--tcp") == 0 && more) {
            listen_list(0, argv[++i]);
        } else if (strcmp(argv[i], "--udp") == 0 && more) {
            listen_list(1, argv[++i]);
        } else if (strcmp(argv[i], "--echo-peer") == 0) {
            echo_peer = 1;
        } else {
            fprintf(stderr,
                    "usage: responder [--identity TEXT] [--tcp PORTS] [--udp PORTS] "
                    "[--echo-peer]\n");
            return 2;
        }
    }
    if (identity == NULL) {
        gethostname(host, sizeof host - 1);
        identity = host;
    }
    if (nfds == 0) listen_on(0, "80");
    fprintf(stderr, "responder: %s serving %d socket(s)\n", identity, nfds);
    for (;;) {
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll", "");
        }
        for (int i = 0; i < nfds; i++) {
            if (fds[i].revents & POLLIN) serve(i, identity, echo_peer);
        }
    }
}
