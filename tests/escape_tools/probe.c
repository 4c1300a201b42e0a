/* Prints the effective uid it runs with and whether it can read /etc/shadow: a setuid
 * or file-capability copy of it run by an unprivileged host user must show neither
 * euid=0 nor shadow=readable. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int fd = open("/etc/shadow", O_RDONLY);
    printf("euid=%d shadow=%s\n", (int)geteuid(), fd >= 0 ? "readable" : "denied");
    return 0;
}
