// C++ operator new and delete through gomalloc: plain, array, sized,
// over-aligned and nothrow forms, standard containers, and objects created on
// one thread and destroyed on another. Every operator new result is checked
// to be a gomalloc block.
//
// Usage: cxx            runs the checks, prints "cxx: ok"
#include "common.h"

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static std::atomic<long> constructed{0}, destroyed{0};

// A thread_local whose destructor frees and allocates while its thread exits.
struct ThreadState {
    std::vector<std::string> lines;
    ~ThreadState() {
        lines.clear();
        lines.shrink_to_fit();
        std::string farewell(500, 'z');
        CHECK(farewell.size() == 500, "allocation in a thread_local destructor");
    }
};
static thread_local ThreadState thread_state;

struct Tracked {
    long value;
    std::string name;
    explicit Tracked(long v) : value(v), name("tracked object number " + std::to_string(v)) { constructed++; }
    ~Tracked() { destroyed++; }
};

struct alignas(64) Line {
    char bytes[100];
};

struct alignas(8192) Page {
    char bytes[10000];
};

template <typename T> static void check_ours(const T *p, std::size_t align, const char *what) {
    CHECK(p != nullptr, "%s: null", what);
    CHECK(gom_test_is_ours(p), "%s: %p is not a gomalloc block", what, (const void *)p);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0, "%s: %p not aligned to %zu", what, (const void *)p, align);
}

static void plain_and_array() {
    int *i = new int(42);
    check_ours(i, alignof(int), "new int");
    delete i;
    Tracked *t = new Tracked(1);
    check_ours(t, alignof(Tracked), "new Tracked");
    delete t;
    Tracked *arr = static_cast<Tracked *>(::operator new[](sizeof(Tracked) * 3));
    check_ours(arr, alignof(Tracked), "operator new[]");
    ::operator delete[](arr);
    std::string *s = new std::string[50];
    for (int k = 0; k < 50; k++) s[k] = std::string(100 + k, 'a');
    delete[] s;
    char *big = new char[1 << 20];
    check_ours(big, 16, "new char[1 MiB]");
    delete[] big;
    ::operator delete(::operator new(100), 100); // explicit sized delete
    ::operator delete[](::operator new[](5000), 5000);
}

static void over_aligned() {
    Line *l = new Line;
    check_ours(l, 64, "new Line");
    delete l;
    Line *ls = new Line[7];
    check_ours(ls, 64, "new Line[7]");
    delete[] ls;
    Page *p = new Page;
    check_ours(p, 8192, "new Page");
    delete p;
    Page *ps = new Page[3];
    check_ours(ps, 8192, "new Page[3]");
    delete[] ps;
    Line *n = new (std::nothrow) Line;
    check_ours(n, 64, "new (nothrow) Line");
    delete n;
    void *raw = ::operator new(10, std::align_val_t(1 << 16));
    check_ours(static_cast<char *>(raw), 1 << 16, "operator new(align 64 KiB)");
    ::operator delete(raw, 10, std::align_val_t(1 << 16));
}

static void nothrow() {
    volatile std::size_t huge = SIZE_MAX / 2;
    CHECK(::operator new(huge, std::nothrow) == nullptr, "nothrow new of SIZE_MAX/2");
    CHECK(::operator new[](huge, std::nothrow) == nullptr, "nothrow new[] of SIZE_MAX/2");
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == nullptr, "aligned nothrow new");
    void *p = ::operator new(32, std::nothrow);
    check_ours(static_cast<char *>(p), 16, "nothrow new");
    ::operator delete(p, std::nothrow);
}

static void containers() {
    std::vector<std::string> words;
    for (int k = 0; k < 200000; k++) words.push_back("word-" + std::to_string(k * 7919 % 100003));
    std::map<std::string, int> counts;
    for (const auto &w : words) counts[w]++;
    std::unordered_map<int, std::vector<int>> buckets;
    for (int k = 0; k < 100000; k++) buckets[k % 997].push_back(k);
    long sum = 0;
    for (const auto &b : buckets) sum += static_cast<long>(b.second.size());
    CHECK(sum == 100000, "unordered_map holds %ld", sum);
    CHECK(counts.size() > 1000, "map holds %zu", counts.size());
    words.clear();
    words.shrink_to_fit();
}

// A throwing new that cannot be satisfied calls the new_handler while one
// is installed, then throws std::bad_alloc; a handler may throw instead.
static int handler_calls;
static void give_up_after_three() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}
struct HandlerGaveUp {};
static void throw_own() { throw HandlerGaveUp{}; }

static void out_of_memory() {
    volatile std::size_t huge = SIZE_MAX / 4;
    int caught = 0;
    try {
        void *p = ::operator new(huge);
        std::printf("operator new(huge) returned %p\n", p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        char *p = new char[huge];
        std::printf("new char[huge] returned %p\n", (void *)p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new(huge, std::align_val_t(64));
        std::printf("aligned operator new(huge) returned %p\n", p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new[](huge, std::align_val_t(4096));
        std::printf("aligned operator new[](huge) returned %p\n", p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    CHECK(caught == 4, "std::bad_alloc caught %d times of 4", caught);
    std::set_new_handler(give_up_after_three);
    try {
        (void)::operator new(huge);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    CHECK(caught == 5 && handler_calls == 3, "new_handler: called %d times (want 3), caught %d", handler_calls, caught);
    std::set_new_handler(throw_own);
    int own = 0;
    try {
        (void)::operator new(huge, std::align_val_t(128));
    } catch (const HandlerGaveUp &) {
        own++;
    }
    std::set_new_handler(nullptr);
    CHECK(own == 1, "the new_handler's own exception did not reach the caller");
    // Still allocating normally afterwards.
    int *i = new int(7);
    check_ours(i, alignof(int), "new int after bad_alloc");
    delete i;
}

static void across_threads() {
    // Objects made on one thread are destroyed on another.
    constexpr int N = 4;
    std::vector<std::vector<std::unique_ptr<Tracked>>> made(N);
    std::vector<std::thread> makers;
    for (int t = 0; t < N; t++)
        makers.emplace_back([&made, t] {
            for (long k = 0; k < 50000; k++) made[t].push_back(std::make_unique<Tracked>(k));
            for (int k = 0; k < 1000; k++) thread_state.lines.push_back(std::string(k % 300, 'q'));
            std::map<long, std::shared_ptr<Tracked>> local;
            for (long k = 0; k < 20000; k++) local[k] = std::make_shared<Tracked>(k);
        });
    for (auto &m : makers) m.join();
    std::vector<std::thread> killers;
    for (int t = 0; t < N; t++)
        killers.emplace_back([&made, t, N] { made[(t + 1) % N].clear(); });
    for (auto &k : killers) k.join();
    CHECK(constructed == destroyed, "constructed %ld, destroyed %ld", constructed.load(), destroyed.load());
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    plain_and_array();
    over_aligned();
    nothrow();
    out_of_memory();
    containers();
    across_threads();
    std::puts("cxx: ok");
    return 0;
}
