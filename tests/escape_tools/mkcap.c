/* Gives FILE the capability CAP_DAC_OVERRIDE (permitted + effective) through the
 * security.capability xattr, as `setcap cap_dac_override+ep FILE` does. */
#include <stdio.h>
#include <stdint.h>
#include <sys/xattr.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    struct { uint32_t magic; struct { uint32_t permitted, inheritable; } data[2]; } cap = {
        0x02000000 | 0x000001 /* VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE */,
        {{1u << 1, 0}, {0, 0}}};
    if (setxattr(argv[1], "security.capability", &cap, sizeof cap, 0) != 0) {
        perror("setxattr");
        return 1;
    }
    return 0;
}
