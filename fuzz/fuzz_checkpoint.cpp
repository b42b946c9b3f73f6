// libFuzzer target: the checkpoint readers — Muon::load, LiMuon::load, HybridOptimizer::load,
// WarmupCosine::load, and a mirror of the training CLI's load_checkpoint (src/cli/train.cpp) —
// over a LibTorch archive held in memory, on a fixed small model. Any exception (std::exception,
// c10::Error) is a clean rejection; a crash, a sanitizer report or an oversized allocation is a
// finding. After a load succeeds the target takes a step with what was loaded, since a reader
// that lets through state the optimizer cannot use has not done its job.
//
// Input: [mode][encoding][payload]. mode % 7 picks the reader (see Mode). The payload describes an
// archive (format below) which the target writes with OutputArchive and hands to the reader, so
// the fuzzer explores keys, value types, tensor dtypes, shapes and strides: everything our readers
// decide. The archive file's own layers (zip container, pickles, the TorchScript class source that
// torch::jit::load compiles) belong to LibTorch and are out of this target's default scope, since
// LibTorch 1.13 crashes on corrupt ones within seconds (SEGV in ScriptTypeParser::parseClassConstant,
// multi-GB allocations from pickle length fields in Unpickler::readBytes, leaks in miniz on its
// error path); with LIMUON_FUZZ_RAW_ARCHIVE=1 an input whose encoding byte has bit 0 set is
// instead the archive file itself (zip), to reproduce or explore that layer (fuzz/seeds/checkpoint_raw
// holds real archives in that form: run the target on that folder by hand, scripts/fuzz.sh does not).
//
// Archive description: a sequence of entries ended by tag 0 (or by the end of the input):
//   tag(1) keylen(1) key(keylen) value, where tag is
//   1 int64 (8 bytes LE) | 2 double (8 bytes LE) | 3 bool (1) | 4 string: len(1) bytes
//   5 tensor: dtype(1) ndim(1) dims(ndim × 2 bytes LE) layout(1) then numel·itemsize data
//     bytes (more than 8192 elements: every dim is taken mod 9)
//   6 nested archive (entries until its own tag 0) | 7 int list: len(1) 8-byte ints | 8 None
//   9 tuple: len(1), then per element kind(1: bit 0 set double, else int) and 8 bytes LE
//     (LibTorch's AdamW options keep betas as a tuple)
// With LIMUON_FUZZ_WRITE_SEEDS=<dir> set, the binary instead writes seed inputs (real checkpoints
// of every reader, in both encodings) to <dir> and exits; fuzz/make_seeds.py runs it that way.
#include "fuzz_stats.h"
#include "limuon/optim/hybrid.h"
#include "limuon/optim/limuon.h"
#include "limuon/optim/muon.h"
#include "limuon/optim/schedule.h"
#include "limuon/data/images.h"
#include "limuon/data/text.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Logging.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

enum Mode { kMuon, kLiMuon, kHybridLiMuon, kHybridMuon, kHybridAdamW, kSchedule, kCliCheckpoint, kModes };
const char* const kModeNames[] = {"muon", "limuon", "hybrid_limuon", "hybrid_muon", "hybrid_adamw", "schedule", "cli"};

// The signature the CLI mirror expects (the CLI compares the model's own; any fixed string will do).
const char* const kSignature = "fuzz-model;h.0.attn.weight:4x6;h.0.mlp.weight:6x4;h.0.conv.weight:3x2x2";

// ---- the fixed model ------------------------------------------------------------------------

struct Model {
  std::vector<limuon::NamedParam> named;
  std::vector<at::Tensor> matrices() const { return {named[0].param, named[1].param, named[2].param}; }
};

Model make_model() {
  // Deterministic values, fresh tensors per input: a successful load must not leak into the next.
  auto make = [](std::vector<int64_t> shape, double phase) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return at::sin(at::arange(n, at::kFloat) * 0.7 + phase).reshape(shape).set_requires_grad(true);
  };
  Model m;
  m.named = {{"h.0.attn.weight", make({4, 6}, 0.1)}, {"h.0.mlp.weight", make({6, 4}, 0.2)},
             {"h.0.conv.weight", make({3, 2, 2}, 0.3)}, {"h.0.bias", make({6}, 0.4)},
             {"wte.weight", make({8, 4}, 0.5), true}};
  return m;
}

// Loss with a gradient for every parameter; the same at every call so the steps are repeatable.
std::function<at::Tensor()> closure_for(const Model& m) {
  return [&m]() {
    for (const auto& p : m.named)
      if (p.param.grad().defined()) p.param.mutable_grad().zero_();
    at::Tensor loss = at::zeros({}, at::kFloat);
    for (size_t i = 0; i < m.named.size(); ++i) loss = loss + (m.named[i].param * (0.5 + 0.1 * i) - 0.3).pow(2).sum();
    loss.backward();
    return loss.detach();
  };
}

std::vector<torch::optim::OptimizerParamGroup> muon_groups(const Model& m) {
  // Two groups with different options: loading must match state to (group, position).
  std::vector<torch::optim::OptimizerParamGroup> g;
  g.emplace_back(std::vector<at::Tensor>{m.named[0].param, m.named[1].param});
  g.emplace_back(std::vector<at::Tensor>{m.named[2].param});
  return g;
}

limuon::HybridOptions hybrid_options(limuon::MatrixMethod method) {
  limuon::HybridOptions o;
  o.method = method;
  o.limuon.rank(2).oversample(1);  // small enough that the low-rank paths are real on 4×6 matrices
  return o;
}

// The CLI mirror's data positions: a token stream and a tiny image set.
struct Positions {
  std::vector<uint16_t> tokens = std::vector<uint16_t>(64, 7);
  limuon::data::WindowSampler sampler{&tokens, 2, 8, 1};
  limuon::data::ImageDataset images = [] {
    limuon::data::ImageDataset ds;
    ds.images = at::zeros({5, 1, 2, 2}, at::kByte);
    ds.labels = at::arange(5, at::kLong) % 10;
    return ds;
  }();
  limuon::data::ImageBatcher batcher{&images, 2, 3, true};
};

// ---- one reader per mode: load, then use what was loaded ------------------------------------

void run_mode(int mode, InputArchive& archive) {
  Model m = make_model();
  const auto closure = closure_for(m);
  switch (mode) {
    case kMuon: {
      limuon::Muon opt(muon_groups(m), limuon::MuonOptions(0.02));
      opt.load(archive);
      opt.step(closure);
      break;
    }
    case kLiMuon: {
      limuon::LiMuon opt(muon_groups(m), limuon::LiMuonOptions(0.02).rank(2).oversample(1));
      opt.load(archive);
      opt.step(closure);
      opt.step(closure);
      break;
    }
    case kHybridLiMuon:
    case kHybridMuon:
    case kHybridAdamW: {
      const auto method = mode == kHybridLiMuon ? limuon::MatrixMethod::limuon
                          : mode == kHybridMuon ? limuon::MatrixMethod::muon
                                                : limuon::MatrixMethod::adamw;
      limuon::HybridOptimizer opt(limuon::route_parameters(m.named), hybrid_options(method));
      opt.load(archive);
      opt.step(closure);
      break;
    }
    case kSchedule: {
      limuon::HybridOptimizer opt(limuon::route_parameters(m.named), hybrid_options(limuon::MatrixMethod::limuon));
      limuon::WarmupCosine sched(opt.optimizers(), 2, 10);
      sched.load(archive);
      for (int i = 0; i < 3; ++i) sched.step();
      opt.step(closure);
      break;
    }
    case kCliCheckpoint: {
      // Mirrors load_checkpoint in src/cli/train.cpp, entry by entry.
      limuon::HybridOptimizer opt(limuon::route_parameters(m.named), hybrid_options(limuon::MatrixMethod::limuon));
      limuon::WarmupCosine sched(opt.optimizers(), 2, 10);
      Positions pos;
      c10::IValue v;
      if (!archive.try_read("limuon_checkpoint", v)) throw std::runtime_error("not a limuon checkpoint");
      archive.read("signature", v);
      if (v.toStringRef() != kSignature) throw std::invalid_argument("other model");
      InputArchive model;
      archive.read("model", model);
      {
        torch::NoGradGuard ng;
        for (auto& p : m.named) {
          at::Tensor t;
          model.read(p.name, t);
          p.param.copy_(t);
        }
      }
      InputArchive o, s;
      archive.read("optimizer", o);
      opt.load(o);
      archive.read("schedule", s);
      sched.load(s);
      // Both tasks' positions, so both samplers' restore paths are exercised.
      archive.read("sampler_step", v);
      pos.sampler.set_step(v.toInt());
      c10::IValue e, i;
      archive.read("batcher_epoch", e);
      archive.read("batcher_index", i);
      pos.batcher.set_position(e.toInt(), i.toInt());
      at::Tensor rng;
      archive.read("rng", rng);
      // A private generator: the global one must stay untouched between inputs.
      auto gen = at::make_generator<at::CPUGeneratorImpl>();
      gen.set_state(rng);
      for (const char* k : {"step", "samples", "tokens", "grad_evals", "evaluations"}) {
        archive.read(k, v);
        (void)v.toInt();
      }
      archive.read("wall_s", v);
      (void)v.toDouble();
      opt.step(closure);
      sched.step();
      pos.sampler.next();
      pos.batcher.next();
      break;
    }
    default:
      break;
  }
}

// ---- the archive description ----------------------------------------------------------------

struct Cursor {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t u8() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(u8()) << (8 * i);
    return v;
  }
  std::string str(size_t len) {
    len = std::min(len, n);
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len, n -= len;
    return s;
  }
};

struct DtypeCode {
  at::ScalarType type;
  size_t itemsize;
};
const DtypeCode kDtypes[] = {{at::kFloat, 4}, {at::kDouble, 8}, {at::kLong, 8},  {at::kInt, 4},
                             {at::kHalf, 2},  {at::kBFloat16, 2}, {at::kBool, 1}, {at::kByte, 1},
                             {at::kChar, 1},  {at::kShort, 2},  {at::kComplexFloat, 8}};
constexpr int kNumDtypes = sizeof(kDtypes) / sizeof(kDtypes[0]);

enum Tag : uint8_t { kEnd = 0, kInt = 1, kDouble = 2, kBool = 3, kString = 4, kTensor = 5, kNested = 6, kIntList = 7, kNone = 8, kTuple = 9 };
enum Layout : uint8_t { kContiguous = 0, kTransposed = 1, kExpanded = 2, kOffset = 3, kLayouts = 4 };
constexpr int kMaxDepth = 6;

at::Tensor tensor_from(Cursor& in) {
  const DtypeCode d = kDtypes[in.u8() % kNumDtypes];
  const int ndim = in.u8() % 5;
  std::vector<int64_t> dims(ndim);
  int64_t claimed = 1;
  for (auto& x : dims) {
    x = in.u8();
    x |= static_cast<int64_t>(in.u8()) << 8;
    claimed = std::min<int64_t>(claimed * std::max<int64_t>(x, 1), 1 << 20);
  }
  if (claimed > 8192)
    for (auto& x : dims) x %= 9;  // keep the tensors small (the CPU generator state has 5056 bytes)
  const int layout = in.u8() % kLayouts;
  // The stored tensor's shape before the view that gives it its strides.
  std::vector<int64_t> base = dims;
  if (layout == kTransposed && ndim >= 2) std::swap(base[ndim - 1], base[ndim - 2]);
  if (layout == kExpanded && ndim >= 1) base[0] = 1;
  if (layout == kOffset && ndim >= 1) base[0] += 1;
  int64_t numel = 1;
  for (int64_t x : base) numel *= x;
  const size_t nbytes = static_cast<size_t>(numel) * d.itemsize;
  std::vector<uint8_t> bytes(nbytes, 0);
  const std::string got = in.str(nbytes);
  if (!got.empty()) std::memcpy(bytes.data(), got.data(), got.size());
  at::Tensor t;
  if (d.type == at::kBool) {
    t = at::from_blob(bytes.data(), base, at::kByte).ne(0);  // only 0/1 are valid bools
  } else {
    t = at::from_blob(bytes.data(), base, d.type).clone();
  }
  if (layout == kTransposed && ndim >= 2) t = t.transpose(-1, -2);
  if (layout == kExpanded && ndim >= 1) t = t.expand(dims);
  if (layout == kOffset && ndim >= 1) t = t.narrow(0, 1, dims[0]);
  return t;
}

// Keys become attribute names in the TorchScript class source that LibTorch writes into the
// archive and compiles again on load; a name that source cannot hold (a TorchScript dunder such as
// __forward_hooks__ crashes LibTorch 1.13's ScriptTypeParser) is LibTorch's writer failing, not a
// reader input. Keys are kept to the characters limuon's writers use and dunders are renamed.
std::string key_from(Cursor& in) {
  std::string key = in.str(in.u8());
  for (char& c : key)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '/' && c != '-') c = '_';
  if (key.rfind("__", 0) == 0) key[0] = 'x';
  return key;
}

void describe_into(Cursor& in, OutputArchive& out, int depth) {
  while (!in.empty()) {
    const uint8_t tag = in.u8();
    if (tag == kEnd || tag > kTuple) return;
    const std::string key = key_from(in);
    switch (tag) {
      case kInt:
        out.write(key, c10::IValue(static_cast<int64_t>(in.u64())));
        break;
      case kDouble: {
        const uint64_t bits = in.u64();
        double d;
        std::memcpy(&d, &bits, 8);
        out.write(key, c10::IValue(d));
        break;
      }
      case kBool:
        out.write(key, c10::IValue(static_cast<bool>(in.u8() & 1)));
        break;
      case kString:
        out.write(key, c10::IValue(in.str(in.u8())));
        break;
      case kTensor:
        out.write(key, tensor_from(in));
        break;
      case kNested: {
        OutputArchive sub(out.compilation_unit());
        if (depth < kMaxDepth) describe_into(in, sub, depth + 1);
        out.write(key, sub);
        break;
      }
      case kIntList: {
        c10::List<int64_t> list;
        for (int i = in.u8() % 9; i > 0; --i) list.push_back(static_cast<int64_t>(in.u64()));
        out.write(key, c10::IValue(list));
        break;
      }
      case kNone:
        out.write(key, c10::IValue());
        break;
      case kTuple: {
        std::vector<c10::IValue> elements;
        for (int i = in.u8() % 9; i > 0; --i) {
          const bool is_double = in.u8() & 1;
          const uint64_t bits = in.u64();
          double d;
          std::memcpy(&d, &bits, 8);
          elements.push_back(is_double ? c10::IValue(d) : c10::IValue(static_cast<int64_t>(bits)));
        }
        out.write(key, c10::IValue(c10::ivalue::Tuple::create(std::move(elements))));
        break;
      }
    }
  }
}

std::string to_bytes(OutputArchive& out) {
  std::string bytes;
  out.save_to([&](const void* p, size_t n) {
    bytes.append(static_cast<const char*>(p), n);
    return n;
  });
  return bytes;
}

// ---- seed writing (LIMUON_FUZZ_WRITE_SEEDS) -------------------------------------------------

// The description of an archive that a reader accepts: the inverse of describe_into.
void describe_archive(InputArchive& in, std::string& out) {
  auto key = [&](uint8_t tag, const std::string& k) {
    out.push_back(static_cast<char>(tag));
    out.push_back(static_cast<char>(k.size()));
    out += k;
  };
  auto u64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  for (const std::string& k : in.keys()) {
    if (k.size() > 255) throw std::runtime_error("key too long for a seed: " + k);
    InputArchive sub;
    at::Tensor t;
    c10::IValue v;
    if (in.try_read(k, sub)) {
      key(kNested, k);
      describe_archive(sub, out);
      out.push_back(static_cast<char>(kEnd));
    } else if (in.try_read(k, t) || in.try_read(k, t, true)) {
      key(kTensor, k);
      int code = -1;
      for (int i = 0; i < kNumDtypes; ++i)
        if (kDtypes[i].type == t.scalar_type()) code = i;
      if (code < 0 || t.dim() > 4) throw std::runtime_error("tensor " + k + " cannot be described");
      if (t.numel() > 8192) throw std::runtime_error("tensor " + k + " is too large to describe");
      out.push_back(static_cast<char>(code));
      out.push_back(static_cast<char>(t.dim()));
      for (int64_t s : t.sizes()) {
        out.push_back(static_cast<char>(s & 0xFF));
        out.push_back(static_cast<char>(s >> 8));
      }
      out.push_back(static_cast<char>(kContiguous));
      const at::Tensor c = t.contiguous();
      out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
    } else if (in.try_read(k, v)) {
      if (v.isInt()) {
        key(kInt, k);
        u64(static_cast<uint64_t>(v.toInt()));
      } else if (v.isDouble()) {
        key(kDouble, k);
        const double d = v.toDouble();
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        u64(bits);
      } else if (v.isBool()) {
        key(kBool, k);
        out.push_back(static_cast<char>(v.toBool()));
      } else if (v.isString()) {
        key(kString, k);
        const std::string& s = v.toStringRef();
        out.push_back(static_cast<char>(s.size()));
        out += s;
      } else if (v.isTuple()) {
        key(kTuple, k);
        const auto& elements = v.toTupleRef().elements();
        out.push_back(static_cast<char>(elements.size()));
        for (const auto& e : elements) {
          if (!e.isDouble() && !e.isInt()) throw std::runtime_error("tuple " + k + " cannot be described");
          out.push_back(static_cast<char>(e.isDouble()));
          uint64_t bits;
          if (e.isDouble()) {
            const double d = e.toDouble();
            std::memcpy(&bits, &d, 8);
          } else {
            bits = static_cast<uint64_t>(e.toInt());
          }
          u64(bits);
        }
      } else {
        throw std::runtime_error("entry " + k + " has a type seeds cannot describe");
      }
    }
  }
}

void write_seed(const std::string& dir, const std::string& name, int mode, bool raw, const std::string& payload) {
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.put(static_cast<char>(mode));
  f.put(static_cast<char>(raw ? 1 : 0));
  f << payload;
  if (!f) throw std::runtime_error("cannot write seed " + name);
}

// Saves every reader's state after a few real steps, checks the reader accepts it, and writes it
// in both encodings.
void write_seeds(const std::string& dir) {
  for (int mode = 0; mode < kModes; ++mode) {
    for (const char* variant : {"", "_lowrank"}) {
      const bool lowrank = variant[0] != '\0';
      if (lowrank && mode != kLiMuon && mode != kHybridLiMuon) continue;
      Model m = make_model();
      const auto closure = closure_for(m);
      OutputArchive out;
      auto lopt = limuon::LiMuonOptions(0.02).rank(2).oversample(1);
      if (lowrank) lopt.lowrank_state(limuon::LowRankState::paper);
      switch (mode) {
        case kMuon: {
          limuon::Muon opt(muon_groups(m), limuon::MuonOptions(0.02));
          opt.step(closure);
          opt.save(out);
          break;
        }
        case kLiMuon: {
          limuon::LiMuon opt(muon_groups(m), lopt);
          opt.step(closure);
          opt.step(closure);
          opt.save(out);
          break;
        }
        default: {
          const auto method = mode == kHybridMuon ? limuon::MatrixMethod::muon
                              : mode == kHybridAdamW ? limuon::MatrixMethod::adamw
                                                     : limuon::MatrixMethod::limuon;
          auto ho = hybrid_options(method);
          if (lowrank) ho.limuon.lowrank_state(limuon::LowRankState::paper);
          limuon::HybridOptimizer opt(limuon::route_parameters(m.named), ho);
          limuon::WarmupCosine sched(opt.optimizers(), 2, 10);
          opt.step(closure);
          opt.step(closure);
          sched.step();
          if (mode == kSchedule) {
            sched.save(out);
          } else if (mode == kCliCheckpoint) {
            // The entries save_checkpoint in src/cli/train.cpp writes (both tasks' positions).
            out.write("limuon_checkpoint", c10::IValue(int64_t{1}));
            out.write("signature", c10::IValue(std::string(kSignature)));
            OutputArchive model(out.compilation_unit()), o(out.compilation_unit()), s(out.compilation_unit());
            for (const auto& p : m.named) model.write(p.name, p.param.detach());
            out.write("model", model);
            opt.save(o);
            out.write("optimizer", o);
            sched.save(s);
            out.write("schedule", s);
            out.write("sampler_step", c10::IValue(int64_t{3}));
            out.write("batcher_epoch", c10::IValue(int64_t{1}));
            out.write("batcher_index", c10::IValue(int64_t{2}));
            out.write("augment_step", c10::IValue(int64_t{4}));
            out.write("rng", at::make_generator<at::CPUGeneratorImpl>(42).get_state());
            for (const char* k : {"step", "samples", "tokens", "grad_evals", "evaluations", "nonfinite_steps"})
              out.write(k, c10::IValue(int64_t{2}));
            out.write("wall_s", c10::IValue(1.5));
          } else {
            opt.save(out);
          }
          break;
        }
      }
      const std::string raw = to_bytes(out);
      InputArchive in;
      in.load_from(raw.data(), raw.size());
      run_mode(mode, in);  // the seed must be accepted, or it seeds nothing useful
      std::string desc;
      InputArchive again;
      again.load_from(raw.data(), raw.size());
      describe_archive(again, desc);
      const std::string base = std::string(kModeNames[mode]) + variant;
      write_seed(dir, base + "_described", mode, false, desc);
      write_seed(dir, base + "_zip", mode, true, raw);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One thread: the fuzzer's inputs are tiny and runs must be reproducible.
  at::set_num_threads(1);
  // Nearly every input is rejected with a c10::Error, and each one captures and symbolizes a C++
  // backtrace for its message (dladdr over every frame): that was the largest cost per input, for
  // text the target throws away.
  c10::SetStackTraceFetcher([] { return std::string(); });
  if (const char* dir = std::getenv("LIMUON_FUZZ_WRITE_SEEDS")) {
    try {
      write_seeds(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_checkpoint: writing seeds failed: %s\n", e.what());
      std::exit(1);
    }
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int mode = data[0] % kModes;
  static const bool raw_enabled = std::getenv("LIMUON_FUZZ_RAW_ARCHIVE") != nullptr;
  const bool raw = raw_enabled && (data[1] & 1);
  Cursor in{data + 2, size - 2};

  std::string bytes;
  if (raw) {
    bytes.assign(reinterpret_cast<const char*>(in.p), in.n);
  } else {
    // Building the archive is the harness's business: a description LibTorch refuses to write
    // (a key it does not allow, say) is no input to the reader.
    try {
      OutputArchive out;
      describe_into(in, out, 0);
      bytes = to_bytes(out);
    } catch (const std::exception&) {
      return 0;
    }
  }
  try {
    InputArchive archive;
    archive.load_from(bytes.data(), bytes.size());
    run_mode(mode, archive);
    limuon_fuzz::accepted();
  } catch (const std::exception&) {
    // c10::Error derives from std::exception: every clean rejection lands here.
    limuon_fuzz::rejected();
  }
  return 0;
}
