/* pause: the process that holds a lab pod's sandbox (its network namespace) open.
 *
 * The calico-lab/pause image's only file, built static by calico_lab.k8s_images (no registry is
 * reachable, so the lab makes the sandbox image containerd and kubelet name). It sleeps until
 * SIGTERM or SIGINT and reaps any child it inherits (it is PID 1 when the pod shares one PID
 * namespace). */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) {
        pause();
    }
}
