/* The kernel keyring from both sides. On the host: `keys add DESC` puts a key in the
 * caller's user keyring (and prints its serial), `keys unlink SERIAL` takes it out. In
 * a container: `keys find DESC` looks for it in the user keyring and `keys new` adds a
 * key of its own; both must be refused by the default seccomp profile, as must
 * `keys uring` (io_uring_setup). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEY_SPEC_USER_KEYRING -4
#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_UNLINK 9
#define KEYCTL_SEARCH 10

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long r;
    if (!strcmp(argv[1], "add") && argc == 3)
        r = syscall(SYS_add_key, "user", argv[2], "host secret", 11, KEY_SPEC_USER_KEYRING);
    else if (!strcmp(argv[1], "unlink") && argc == 3)
        r = syscall(SYS_keyctl, KEYCTL_UNLINK, atol(argv[2]), KEY_SPEC_USER_KEYRING);
    else if (!strcmp(argv[1], "find") && argc == 3)
        r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", argv[2], 0);
    else if (!strcmp(argv[1], "new"))
        r = syscall(SYS_add_key, "user", "from-container", "x", 1, KEY_SPEC_SESSION_KEYRING);
    else if (!strcmp(argv[1], "uring")) {
        /* io_uring: left out of Docker's profile since 25.0 */
        char params[120];
        memset(params, 0, sizeof params);
        r = syscall(425 /* io_uring_setup */, 8, params);
    }
    else
        return 2;
    if (r < 0) {
        printf("refused %s\n", strerror(errno));
        return 1;
    }
    printf("ok %ld\n", r);
    return 0;
}
