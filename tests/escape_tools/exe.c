/* A hostile container's helper for tests/escapes.rs: watches /proc for processes and
 * tries to open each one's /proc/PID/exe, for reading and for writing, the way the
 * CVE-2019-5736 exploit waits for a runtime's helper to show up. Prints every distinct
 * exe target it could resolve, and "WRITE-OPEN pid target" if a write open succeeded.
 * Runs for SECONDS seconds. Usage: exe SECONDS */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 5;
    time_t end = time(NULL) + secs;
    char seen[64][512];
    int nseen = 0, self = getpid();
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        if (!d) return 1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == self) continue;
            char path[64], target[512];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, target, sizeof target - 1);
            if (n > 0) {
                target[n] = 0;
                int known = 0;
                for (int i = 0; i < nseen; i++) known |= !strcmp(seen[i], target);
                if (!known && nseen < 64) {
                    strcpy(seen[nseen++], target);
                    printf("exe %s\n", target);
                    fflush(stdout);
                }
            }
            int fd = open(path, O_WRONLY);
            if (fd >= 0) {
                printf("WRITE-OPEN %d %s\n", pid, n > 0 ? target : "?");
                fflush(stdout);
                close(fd);
            }
            fd = open(path, O_RDONLY);
            if (fd >= 0) close(fd);
        }
        closedir(d);
    }
    return 0;
}
