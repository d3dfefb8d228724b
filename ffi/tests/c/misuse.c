/* The misuse suite through the C library: one misuse per run, chosen by the
 * first argument. The harness (ffi/tests/c_programs.rs) expects each to stop
 * the process with SIGABRT and one line on stderr naming the problem and the
 * address this program prints first ("addr=0x..."), except where the
 * library's documented behaviour is to go on (a foreign free in the default
 * build, which is ignored: see include/gomalloc.h).
 *
 * Cases: double-free-small, double-free-large, interior-free,
 * foreign-free-stack, foreign-free-mmap, free-after-realloc, and, for the
 * secure build, double-free-not-at-head, write-past-end,
 * free-list-corruption. */
#include "common.h"

#include <sys/mman.h>

static void announce(const void *p) {
    printf("addr=%p\n", p);
    fflush(stdout);
}

/* Keeps the compiler from reasoning about the misuse (it may warn, or drop
 * the call: -Werror and -O2 are on). */
static void *volatile launder_slot;
static void *launder(void *p) {
    launder_slot = p;
    return launder_slot;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: misuse CASE\n");
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "double-free-small") == 0) {
        char *p = malloc(40);
        announce(p);
        free(p);
        free(launder(p));
    } else if (strcmp(c, "double-free-large") == 0) {
        char *p = malloc(300 << 10);
        announce(p);
        free(p);
        free(launder(p));
    } else if (strcmp(c, "interior-free") == 0) {
        char *p = malloc(100);
        announce(p + 24);
        free(launder(p + 24));
    } else if (strcmp(c, "foreign-free-stack") == 0) {
        char local[64];
        memset(local, 1, sizeof local);
        announce(local);
        free(launder(local));
        puts("foreign-free-stack: ignored");
        return 0;
    } else if (strcmp(c, "foreign-free-mmap") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED, "mmap");
        announce(p);
        free(launder(p));
        puts("foreign-free-mmap: ignored");
        return 0;
    } else if (strcmp(c, "free-after-realloc") == 0) {
        char *p = malloc(64);
        char *q = realloc(p, 5000);
        CHECK(q != NULL && q != p, "realloc to another size class moves the block");
        announce(p);
        free(launder(p));
    } else if (strcmp(c, "double-free-not-at-head") == 0) {
        char *p = malloc(32), *q = malloc(32);
        announce(p);
        free(p);
        free(q);
        free(launder(p));
    } else if (strcmp(c, "write-past-end") == 0) {
        char *p = launder(malloc(50));
        announce(p);
        p[50] = 'x';
        free(p);
    } else if (strcmp(c, "free-list-corruption") == 0) {
        char *p = malloc(64), *q = malloc(64);
        free(q);
        announce(q);
        /* Use after free: overwrite the free block's link word. */
        memcpy(launder(q), &p, sizeof p);
        void *r = malloc(64), *s = malloc(64);
        printf("got %p %p\n", r, s);
    } else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    printf("%s: not stopped\n", c);
    return 1;
}
