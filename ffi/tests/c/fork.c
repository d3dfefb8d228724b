/* fork() from a multi-threaded process: background threads allocate and free
 * (including cross-thread frees) without pause while the main thread forks
 * ROUNDS times. Each child allocates small and large blocks, starts threads
 * of its own that allocate, and exits 0; a child that deadlocks is killed by
 * its alarm and fails the test.
 *
 * Usage: fork [rounds] */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKGROUND 4

static atomic_int stop;
static void *_Atomic shared_slot[64];

static void *churn(void *arg) {
    uint64_t rng = 0x1234567ull + (uint64_t)(intptr_t)arg;
    while (!atomic_load(&stop)) {
        uint64_t r = gom_test_rand(&rng);
        size_t n = r % 64 == 0 ? 40000 + r % 300000 : r % 2000;
        unsigned char *p = malloc(n);
        CHECK(p != NULL, "malloc");
        gom_test_fill(p, n);
        CHECK(gom_test_verify(p, p, n, n), "pattern");
        /* Swap through a shared slot: whoever takes a block frees it. */
        void *old = atomic_exchange(&shared_slot[(r >> 16) % 64], (void *)p);
        free(old);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        void *p = malloc((size_t)(i * 37) % 5000);
        CHECK(p != NULL, "malloc in a child's thread");
        free(p);
    }
    return NULL;
}

static void child(void) {
    alarm(30);
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        size_t n = i % 100 == 0 ? 100000 : (size_t)i * 13 % 4000;
        blocks[i] = malloc(n);
        CHECK(blocks[i] != NULL, "malloc in the child");
        memset(blocks[i], i, n);
    }
    for (int i = 0; i < 1000; i++) free(blocks[i]);
    /* Blocks allocated by the parent's threads before the fork are ours too. */
    for (int i = 0; i < 64; i++) free(atomic_exchange(&shared_slot[i], NULL));
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, child_thread, NULL) == 0, "create in child");
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    exit(0);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    pthread_t t[BACKGROUND];
    for (int i = 0; i < BACKGROUND; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)(intptr_t)i) == 0, "create");
    for (int r = 0; r < rounds; r++) {
        /* Let the threads run into the middle of their allocations. */
        for (volatile int spin = 0; spin < (r % 7) * 20000; spin++) {
        }
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) child();
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: child %s %d", r,
              WIFSIGNALED(status) ? "killed by signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < BACKGROUND; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 64; i++) free(atomic_exchange(&shared_slot[i], NULL));
    printf("fork: %d rounds ok\n", rounds);
    return 0;
}
