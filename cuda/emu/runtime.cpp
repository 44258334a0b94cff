// Fiber scheduler of the CUDA-on-CPU emulator (see shim/cuda_runtime.h).
//
// Each CUDA thread of the running block is a fiber with its own stack; a
// hand-written x86-64 context switch (callee-saved registers, MXCSR and the
// x87 control word) moves between a fiber and the scheduler, which is ~50x
// cheaper than swapcontext's signal-mask syscall and matters because the
// backward kernel does ~100 warp collectives per Gaussian.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "shim/cuda_runtime.h"

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

extern "C" void lf_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.p2align 4
.globl lf_emu_switch
.hidden lf_emu_switch
.type lf_emu_switch,@function
lf_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr 8(%rsp)
    fldcw (%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size lf_emu_switch, .-lf_emu_switch
)");

namespace lf_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

enum class State { Ready, Block, Warp, Done };

struct Fiber {
    void* sp = nullptr;
    char* stack = nullptr;  // mmap'd, lowest page is a guard page
    dim3 tid;
    int lane = 0, warp = 0;
    State state = State::Ready;
    Op op = Op::None;
    unsigned mask = 0;
    int pred = 0, arg = 0, width = 32;
    uint64_t payload = 0, result = 0;
};

struct Runtime {
    std::vector<Fiber> fibers;
    void* sched_sp = nullptr;
    Fiber* cur = nullptr;
    dim3 block_idx, block_dim, grid_dim;
    std::vector<unsigned char> shared;
    std::function<void()> body;
    int nthreads = 0, done = 0, at_block = 0;
    std::string error;
    bool running = false;
};

Runtime R;
std::mutex launch_mutex;  // one emulated launch at a time per process
const size_t page = (size_t)sysconf(_SC_PAGESIZE);

std::string where(const Fiber& f) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", R.block_idx.x, R.block_idx.y,
                  R.block_idx.z, f.tid.x, f.tid.y, f.tid.z);
    return buf;
}

const char* op_name(Op op) {
    switch (op) {
        case Op::Sync: return "__syncthreads";
        case Op::SyncCount: return "__syncthreads_count";
        case Op::SyncOr: return "__syncthreads_or";
        case Op::SyncAnd: return "__syncthreads_and";
        case Op::Any: return "__any_sync";
        case Op::All: return "__all_sync";
        case Op::Ballot: return "__ballot_sync";
        case Op::ShflIdx: return "__shfl_sync";
        case Op::ShflUp: return "__shfl_up_sync";
        case Op::ShflDown: return "__shfl_down_sync";
        case Op::ShflXor: return "__shfl_xor_sync";
        default: return "?";
    }
}

// Back to the scheduler; a fiber that failed or finished is never resumed.
void yield_to_scheduler() { lf_emu_switch(&R.cur->sp, R.sched_sp); }

[[noreturn]] void fail(const std::string& msg) {
    if (R.error.empty()) R.error = msg;
    R.cur->state = State::Done;
    yield_to_scheduler();
    __builtin_trap();  // not resumed
}

void trampoline() {
    R.body();
    R.cur->state = State::Done;
    ++R.done;
    yield_to_scheduler();
    __builtin_trap();
}

void prepare_fiber(Fiber& f) {
    if (f.stack == nullptr) {
        void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) throw std::runtime_error("CUDA emulator: cannot allocate fiber stacks");
        mprotect(m, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
        f.stack = static_cast<char*>(m);
    }
    // Frame that lf_emu_switch pops: x87 cw, mxcsr, r15..rbp, return address.
    uintptr_t top = ((uintptr_t)(f.stack + page + kStackBytes)) & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 80);
    for (int i = 0; i < 10; ++i) sp[i] = 0;
    *reinterpret_cast<uint16_t*>(&sp[0]) = 0x037F;  // default x87 control word
    *reinterpret_cast<uint32_t*>(&sp[1]) = 0x1F80;  // default MXCSR
    sp[8] = reinterpret_cast<uint64_t>(&trampoline);
    f.sp = sp;
    f.state = State::Ready;
    f.op = Op::None;
}

std::string describe_stall() {
    std::string s;
    int shown = 0;
    for (int i = 0; i < R.nthreads; ++i) {
        const Fiber& f = R.fibers[i];
        if (f.state == State::Done || shown >= 4) continue;
        s += "; " + where(f) + " waits at " + op_name(f.op);
        ++shown;
    }
    return s;
}

void run_block() {
    R.done = 0;
    R.at_block = 0;
    for (int i = 0; i < R.nthreads; ++i) prepare_fiber(R.fibers[i]);
    std::fill(R.shared.begin(), R.shared.end(), (unsigned char)0xFF);  // NaN until written
    for (;;) {
        bool ran = false;
        for (int i = 0; i < R.nthreads; ++i) {
            Fiber& f = R.fibers[i];
            if (f.state != State::Ready) continue;
            R.cur = &f;
            lf_emu_switch(&R.sched_sp, f.sp);
            R.cur = nullptr;
            ran = true;
            if (!R.error.empty()) throw std::runtime_error(R.error);
        }
        if (R.done == R.nthreads) return;
        if (!ran) {
            if (R.at_block > 0 && R.at_block + R.done == R.nthreads)
                throw std::runtime_error("CUDA emulator: " + std::to_string(R.done) +
                                         " thread(s) exited while the others wait at a block barrier (undefined "
                                         "behaviour in CUDA)" + describe_stall());
            throw std::runtime_error("CUDA emulator: deadlock" + describe_stall());
        }
    }
}

}  // namespace

const dim3& thread_idx() { return R.cur->tid; }
const dim3& block_idx() { return R.block_idx; }
const dim3& block_dim() { return R.block_dim; }
const dim3& grid_dim() { return R.grid_dim; }
void* dynamic_shared() { return R.shared.empty() ? nullptr : R.shared.data(); }

void launch(dim3 grid, dim3 block, size_t shared_bytes, std::function<void()> body) {
    std::lock_guard<std::mutex> guard(launch_mutex);
    const long long nthreads = (long long)block.x * block.y * block.z;
    if (nthreads <= 0 || nthreads > kMaxThreads)
        throw std::runtime_error("CUDA emulator: invalid block of " + std::to_string(nthreads) + " threads");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) throw std::runtime_error("CUDA emulator: empty grid");
    if (grid.y > 65535 || grid.z > 65535) throw std::runtime_error("CUDA emulator: grid y/z above 65535");
    R.body = std::move(body);
    R.grid_dim = grid;
    R.block_dim = block;
    R.nthreads = (int)nthreads;
    R.error.clear();
    // Fibers past nthreads (from a bigger earlier launch) keep their stacks and sit out.
    if (R.fibers.size() < (size_t)nthreads) R.fibers.resize(nthreads);
    int t = 0;
    for (unsigned z = 0; z < block.z; ++z)
        for (unsigned y = 0; y < block.y; ++y)
            for (unsigned x = 0; x < block.x; ++x, ++t) {
                R.fibers[t].tid = dim3(x, y, z);
                R.fibers[t].lane = t % 32;
                R.fibers[t].warp = t / 32;
            }
    R.shared.assign(shared_bytes, 0xFF);
    struct Reset {  // drop the kernel's arguments however the launch ends
        ~Reset() { R.body = nullptr; }
    } reset;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                R.block_idx = dim3(bx, by, bz);
                run_block();
            }
}

int block_sync(Op op, int pred) {
    Fiber& f = *R.cur;
    f.state = State::Block;
    f.op = op;
    f.pred = pred;
    if (++R.at_block < R.nthreads - R.done) {
        yield_to_scheduler();
        return (int)f.result;
    }
    if (R.done > 0)
        fail("CUDA emulator: " + std::string(op_name(op)) + " at " + where(f) + " reached after " +
             std::to_string(R.done) + " thread(s) of the block exited (undefined behaviour in CUDA)");
    // Last arrival: every thread of the block waits here.
    int count = 0;
    for (int i = 0; i < R.nthreads; ++i) {
        const Fiber& g = R.fibers[i];
        if (g.op != op) fail("CUDA emulator: threads of one block wait at different barriers (" +
                             std::string(op_name(op)) + " vs " + op_name(g.op) + " at " + where(g) + ")");
        count += g.pred;
    }
    const int res = op == Op::SyncCount ? count
                    : op == Op::SyncOr  ? (count > 0)
                    : op == Op::SyncAnd ? (count == R.nthreads)
                                        : 0;
    for (int i = 0; i < R.nthreads; ++i) {
        Fiber& g = R.fibers[i];
        g.result = (uint64_t)res;
        g.state = State::Ready;
        g.op = Op::None;
    }
    R.at_block = 0;
    return res;
}

uint64_t warp_op(Op op, unsigned mask, int pred, uint64_t payload, int arg, int width) {
    Fiber& f = *R.cur;
    if (!(mask >> f.lane & 1u)) fail("CUDA emulator: " + std::string(op_name(op)) + " at " + where(f) +
                                     " with a mask that does not name the calling lane");
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fail("CUDA emulator: shuffle width " + std::to_string(width) + " is not a power of two <= 32");
    const int base = f.warp * 32;
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (base + l >= R.nthreads)
            fail("CUDA emulator: " + std::string(op_name(op)) + " at " + where(f) + " names lane " +
                 std::to_string(l) + ", which does not exist in this block of " + std::to_string(R.nthreads) +
                 " threads (undefined behaviour in CUDA)");
        if (R.fibers[base + l].state == State::Done)
            fail("CUDA emulator: " + std::string(op_name(op)) + " at " + where(f) + " names lane " +
                 std::to_string(l) + ", which has exited (undefined behaviour in CUDA)");
    }
    f.state = State::Warp;
    f.op = op;
    f.mask = mask;
    f.pred = pred;
    f.payload = payload;
    f.arg = arg;
    f.width = width;
    for (int l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && R.fibers[base + l].state != State::Warp) {
            yield_to_scheduler();  // resumed once the last lane of the mask arrives
            return f.result;
        }
    // Last arrival: resolve the collective for every lane of the mask.
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const Fiber& g = R.fibers[base + l];
        if (g.op != op || g.mask != mask)
            fail("CUDA emulator: lanes of one warp mask wait at different collectives (" + std::string(op_name(op)) +
                 " vs " + op_name(g.op) + " at " + where(g) + ")");
        if (g.pred) ballot |= 1u << l;
    }
    uint64_t results[32];
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const Fiber& g = R.fibers[base + l];
        if (op == Op::Any) {
            results[l] = ballot != 0;
        } else if (op == Op::All) {
            results[l] = ballot == mask;
        } else if (op == Op::Ballot) {
            results[l] = ballot;
        } else {
            const int w = g.width, seg = l & ~(w - 1), in = l - seg;
            int src = l;
            if (op == Op::ShflIdx) src = seg + (((g.arg % w) + w) % w);
            else if (op == Op::ShflUp) src = in - g.arg >= 0 ? l - g.arg : l;
            else if (op == Op::ShflDown) src = in + g.arg < w ? l + g.arg : l;
            else if (op == Op::ShflXor) src = ((l ^ g.arg) & ~(w - 1)) == seg ? (l ^ g.arg) : l;
            if (src < 0 || src >= 32 || !(mask >> src & 1u))
                fail("CUDA emulator: " + std::string(op_name(op)) + " at " + where(g) + " reads lane " +
                     std::to_string(src) + ", outside the mask (undefined value in CUDA)");
            results[l] = R.fibers[base + src].payload;
        }
    }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Fiber& g = R.fibers[base + l];
        g.result = results[l];
        g.state = State::Ready;
        g.op = Op::None;
    }
    return f.result;
}

}  // namespace lf_emu
