/* Allocations that reach the library while it is inside itself.
 *
 * reentry trim SIZE: the first span a process ever returns to the page heap
 *   starts the scavenger thread, and glibc's pthread_create allocates (calloc
 *   of its thread-local table, a few hundred bytes) through this library. A
 *   malloc_trim that returns the free spans of SIZE's class is such a first
 *   return; the harness runs every class up to 1 KiB so one of them is the
 *   class pthread_create asks for. A lock held across that start would hang.
 *
 * reentry atfork: fork handlers registered before the first malloc run
 *   inside gomalloc's (prepare after it, parent and child before it), while
 *   every allocator lock is held; here each of them allocates small and
 *   large blocks, as a library's handlers may.
 *
 * Output goes through write(2) only: stdio would allocate first. */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *s) {
    ssize_t n = write(1, s, strlen(s));
    (void)n;
}

static void churn(void) {
    void *volatile small = malloc(100);
    void *volatile large = malloc(200000);
    CHECK(small != NULL && large != NULL, "malloc in a fork handler");
    memset(small, 1, 100);
    memset(large, 2, 200000);
    free(small);
    free(large);
}

static int prepared, parent_ran, child_ran;
static void on_prepare(void) { churn(); prepared++; }
static void on_parent(void) { churn(); parent_ran++; }
static void on_child(void) { churn(); child_ran++; }

static int atfork(void) {
    CHECK(pthread_atfork(on_prepare, on_parent, on_child) == 0, "pthread_atfork");
    /* The first allocations: gomalloc registers its handlers now, after ours. */
    for (int i = 0; i < 100; i++) {
        churn();
    }
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            churn();
            _exit(child_ran == 1 ? 0 : 3);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
        churn();
    }
    CHECK(prepared == 20 && parent_ran == 20, "handlers ran %d and %d times", prepared, parent_ran);
    say("atfork ok\n");
    return 0;
}

static int trim(size_t size) {
    void *volatile p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = malloc(size);
        CHECK(p[i] != NULL, "malloc");
    }
    for (int i = 0; i < 8; i++) {
        free(p[i]);
    }
    malloc_trim(0);
    void *volatile q = calloc(18, 16);
    CHECK(q != NULL, "calloc after trim");
    free(q);
    say("trim ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "atfork") == 0) {
        return atfork();
    }
    if (argc == 3 && strcmp(argv[1], "trim") == 0) {
        return trim(strtoul(argv[2], NULL, 10));
    }
    say("usage: reentry atfork | reentry trim SIZE\n");
    return 2;
}
