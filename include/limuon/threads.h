// Intra-op thread count: LibTorch starts with 1 thread here; limuon defaults to all cores.
#pragma once

namespace limuon {

// requested > 0: use it; otherwise the LIMUON_THREADS environment variable if set, else every
// core. Applies it to LibTorch (and through OpenMP to OpenBLAS); returns the count in force.
int configure_threads(int requested = 0);

}  // namespace limuon

namespace limuon {

// glibc malloc tuning for training processes: keeps blocks up to 32 MiB in the heap and never
// trims it, so per-step transients (a gradient copy per matrix, ~10 MB each at GPT-2 widths) are
// not mmap'ed and unmapped every step, paying page faults each time (~45 ms of a 165 ms
// low-rank LiMuon step on DistilGPT2 shapes). Process-wide: the CLI calls it at start-up;
// library users opt in. Returns false where the C library does not support it.
bool configure_allocator();

}  // namespace limuon

namespace limuon {

// Run-to-run reproducible BLAS, as far as MKL allows: MKL (linked into PyPI's LibTorch) may round
// differently between two runs of the same program with the same inputs and thread count. Its
// conditional numerical reproducibility mode AUTO costs nothing measurable (768x3072 ns5: 139 ms
// either way) and made the losses of 60 of 60 4-step LiMuon runs repeat (without it 1 in 20
// differed at step 3), but with 2 threads the final weights still differ by rounding in about 1
// run in 20; with 1 thread runs repeat bit for bit. It must be set before MKL initialises, so the
// CLI calls this first thing; a value the user already exported in MKL_CBWR is kept. Returns
// whether the variable is now set.
bool configure_reproducible_blas();

}  // namespace limuon
