/* The lab's pod sandbox ("pause") program: holds a pod's namespaces open.
 * Sleeps in pause(), reaps exited children on SIGCHLD (it is PID 1 of the pod
 * when the PID namespace is shared) and exits 0 on SIGINT or SIGTERM.
 * Built -Os -static by tests/lab/build-mirror-image.sh into an image FROM
 * scratch, so the lab needs no registry image. write(2) instead of stdio keeps
 * the static binary small. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(int fd, const char *msg) {
  ssize_t n = write(fd, msg, strlen(msg));
  (void)n;
}

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    say(STDOUT_FILENO, "pause (chutes-miner lab)\n");
    return 0;
  }
  if (getpid() != 1) {
    say(STDERR_FILENO, "pause: warning: not running as PID 1\n");
  }
  if (handle(SIGINT, on_stop) || handle(SIGTERM, on_stop) || handle(SIGCHLD, on_child)) {
    say(STDERR_FILENO, "pause: sigaction failed\n");
    return 1;
  }
  for (;;) {
    pause();
  }
}
