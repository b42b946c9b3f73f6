// Data-parallel primitives on c10d (TCPStore rendezvous, ProcessGroupGloo): environment parsing,
// bucketed gradient all-reduce, and orthogonalization shared out between ranks.
#include "limuon/dist/data_parallel.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#ifdef LIMUON_HAVE_DIST
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>

namespace limuon::dist {

namespace {

const char* getenv_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A non-negative decimal integer in [lo, hi], or an error naming the variable.
int env_int(const char* name, const char* text, long lo, long hi) {
  const std::string s(text);
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument(std::string("environment: ") + name + "='" + s + "' is not a non-negative integer");
  const long v = std::stol(s);
  if (v < lo || v > hi)
    throw std::invalid_argument(std::string("environment: ") + name + "=" + s + " is out of range [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  return static_cast<int>(v);
}

// c10::Error's what() carries a C++ backtrace that means nothing to a user.
std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Bytes this process has handed to write()/writev() so far (Linux /proc/self/io `wchar`; Gloo's TCP
// transport writes its sockets with writev), or -1.
int64_t bytes_written_so_far() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value)
    if (key == "wchar:") return value;
  return -1;
}

// Where this rank can be told apart by a person reading an error: the IPv4 address of
// GLOO_SOCKET_IFNAME when set, else the loopback for a local job, else the hostname.
std::string own_address(const std::string& master_addr) {
  if (const char* ifname = getenv_or_null("GLOO_SOCKET_IFNAME")) {
    ifaddrs* list = nullptr;
    std::string found;
    if (getifaddrs(&list) == 0) {
      for (ifaddrs* a = list; a; a = a->ifa_next)
        if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && std::string(a->ifa_name) == ifname) {
          char buf[INET_ADDRSTRLEN] = {0};
          inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
          found = buf;
          break;
        }
      freeifaddrs(list);
    }
    if (!found.empty()) return found;
  }
  if (master_addr == "127.0.0.1" || master_addr == "localhost") return "127.0.0.1, pid " + std::to_string(getpid());
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

Env env_from_environment() {
  Env e;
  const char* rank = getenv_or_null("RANK");
  const char* world = getenv_or_null("WORLD_SIZE");
  if (!rank && !world) return e;
  if (!world) throw std::invalid_argument(std::string("environment: RANK=") + rank + " is set but WORLD_SIZE is not");
  if (!rank) throw std::invalid_argument(std::string("environment: WORLD_SIZE=") + world + " is set but RANK is not");
  e.world_size = env_int("WORLD_SIZE", world, 1, 65536);
  e.rank = env_int("RANK", rank, 0, 65535);
  if (e.rank >= e.world_size)
    throw std::invalid_argument("environment: RANK=" + std::to_string(e.rank) + " must be below WORLD_SIZE=" +
                                std::to_string(e.world_size));
  e.local_rank = getenv_or_null("LOCAL_RANK") ? env_int("LOCAL_RANK", getenv_or_null("LOCAL_RANK"), 0, 65535) : e.rank;
  if (!e.distributed()) return e;
  const char* addr = getenv_or_null("MASTER_ADDR");
  const char* port = getenv_or_null("MASTER_PORT");
  if (!addr) throw std::invalid_argument("environment: WORLD_SIZE=" + std::to_string(e.world_size) + " but MASTER_ADDR is not set");
  if (!port) throw std::invalid_argument("environment: WORLD_SIZE=" + std::to_string(e.world_size) + " but MASTER_PORT is not set");
  e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", port, 1, 65535);
  return e;
}

#ifdef LIMUON_HAVE_DIST

bool available() { return true; }

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
  int rank = 0;
  std::vector<std::string> addresses;  // every rank's, exchanged at start-up

  // "rank 1 (10.0.0.2)" for a job of two; "one of rank 1 (...), rank 2 (...)" beyond.
  std::string peers() const {
    std::string out;
    int n = 0;
    for (size_t r = 0; r < addresses.size(); ++r) {
      if (static_cast<int>(r) == rank) continue;
      out += (n++ ? ", rank " : "rank ") + std::to_string(r) + " (" + addresses[r] + ")";
    }
    return n > 1 ? "one of " + out : out;
  }
  // Waits for a collective; a dead or silent peer becomes an error that says what was going on.
  template <class W>
  void wait(const W& work, const char* what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("data-parallel ") + what + " failed on rank " + std::to_string(rank) +
                               ": lost contact with " + peers() + ", which died, was cut off, or did not answer within " +
                               std::to_string(timeout.count() / 1000) + " s: " + message_of(e));
    }
  }
  // Starts a collective, waits for it, and counts it and the bytes written meanwhile.
  template <class Start>
  void run(Stats& stats, const char* what, Start&& start, bool checkpoint = false) {
    const int64_t before = bytes_written_so_far();
    wait(start(), what);
    const int64_t after = bytes_written_so_far();
    int64_t& counter = checkpoint ? stats.wire_bytes_checkpoints : stats.wire_bytes_sent;
    if (before < 0 || after < 0) counter = -1;
    else if (counter >= 0) counter += after - before;
    ++stats.collectives;
  }
};

Group::Group(const Env& env, std::chrono::milliseconds timeout) : impl_(std::make_unique<Impl>()) {
  rank_ = env.rank;
  size_ = env.world_size;
  impl_->timeout = timeout;
  if (size_ == 1) return;  // nothing to connect to
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<std::size_t>(env.world_size);
  so.waitWorkers = true;
  so.timeout = timeout;
  // LibTorch 2.4+ serves the store with libuv by default; said here so that a change of default
  // cannot silently change the server. Its EADDRINUSE text ("address already in use") is what the
  // port-in-use message below looks for (tests/dist_cli.py checks it).
  so.useLibUV = true;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    const std::string what = message_of(e);
    if (env.rank == 0)
      throw std::runtime_error("rank 0 could not start the rendezvous at " + where +
                               (what.find("in use") != std::string::npos ? " (the port is in use: pick another MASTER_PORT)" : "") +
                               " or not all " + std::to_string(env.world_size) + " ranks arrived within " +
                               std::to_string(timeout.count() / 1000) + " s: " + what);
    throw std::runtime_error("rank " + std::to_string(env.rank) + " could not join the rendezvous at " + where + " within " +
                             std::to_string(timeout.count() / 1000) + " s: " + what);
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // Local jobs stay on the loopback interface; a multi-machine job binds where the hostname
  // resolves (or GLOO_SOCKET_IFNAME, as in PyTorch).
  if (const char* ifname = getenv_or_null("GLOO_SOCKET_IFNAME"))
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  impl_->rank = rank_;
  impl_->addresses.assign(static_cast<size_t>(size_), "address unknown");
  try {  // for error messages only: each rank's address, published through the store
    const std::string mine = own_address(env.master_addr);
    impl_->store->set("limuon/address/" + std::to_string(rank_), std::vector<uint8_t>(mine.begin(), mine.end()));
    for (int r = 0; r < size_; ++r) {
      const auto v = impl_->store->get("limuon/address/" + std::to_string(r));
      impl_->addresses[static_cast<size_t>(r)] = std::string(v.begin(), v.end());
    }
  } catch (const std::exception&) {  // the process group's own connection reports a real failure below
  }
  try {
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank_, size_, options);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(rank_) + ": not all " + std::to_string(size_) + " ranks arrived within " +
                             std::to_string(timeout.count() / 1000) + " s (connecting the Gloo process group of " + where +
                             " failed: " + message_of(e) + ")");
  }
}

Group::~Group() = default;

void Group::allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (size_ == 1) return;
  // Buckets of consecutive same-dtype, same-device tensors.
  size_t i = 0;
  while (i < tensors.size()) {
    if (!tensors[i].defined()) {
      ++i;
      continue;
    }
    std::vector<at::Tensor> bucket{tensors[i]};
    int64_t bytes = tensors[i].numel() * tensors[i].element_size();
    size_t j = i + 1;
    for (; j < tensors.size(); ++j) {
      const auto& t = tensors[j];
      if (!t.defined()) continue;
      if (t.scalar_type() != tensors[i].scalar_type() || t.device() != tensors[i].device()) break;
      const int64_t b = t.numel() * t.element_size();
      if (bytes + b > bucket_bytes) break;
      bucket.push_back(t);
      bytes += b;
    }
    std::vector<at::Tensor> flat_views;
    for (const auto& t : bucket) flat_views.push_back(t.reshape(-1));
    std::vector<at::Tensor> flat{at::cat(flat_views)};
    impl_->run(stats_, "gradient all-reduce", [&] { return impl_->pg->allreduce(flat); });
    flat[0].div_(static_cast<double>(size_));
    int64_t off = 0;
    for (auto& t : bucket) {
      const int64_t n = t.numel();
      t.copy_(flat[0].narrow(0, off, n).view(t.sizes()));
      off += n;
    }
    stats_.allreduce_bytes += bytes;
    i = j;
  }
}

double Group::allreduce_sum(double value) {
  if (size_ == 1) return value;
  std::vector<at::Tensor> t{at::full({1}, value, at::kDouble)};
  impl_->run(stats_, "loss all-reduce", [&] { return impl_->pg->allreduce(t); });
  stats_.allreduce_bytes += 8;
  return t[0].item<double>();
}

void Group::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (size_ == 1) return;
  c10d::BroadcastOptions o;
  o.rootRank = root;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
    impl_->run(stats_, "broadcast", [&] { return impl_->pg->broadcast(one, o); });
    if (!t.is_contiguous()) t.copy_(one[0]);
  }
}

void Group::barrier() {
  if (size_ == 1) return;
  impl_->wait(impl_->pg->barrier(), "barrier");
}

void Group::reduce_scatter_mean(const ChunkFn& pack, const at::Tensor& out) {
  TORCH_CHECK(out.is_contiguous() && out.dim() == 1, "reduce_scatter_mean: `out` must be a contiguous 1-D tensor");
  if (size_ == 1) {
    pack(0, out);
    return;
  }
  // Step s sends the partial sum of chunk (r − s − 1) to the next rank and receives that of chunk
  // (r − s − 2) from the previous one, to which it adds its own contribution; after N − 1 steps the
  // partial sum held is chunk r's, complete. (Gloo's reduce_scatter wrote twice these bytes.)
  const int64_t w = out.numel();
  at::Tensor incoming = at::empty({w}, out.options());
  auto index = [&](int k) { return ((k % size_) + size_) % size_; };
  pack(index(rank_ - 1), out);
  for (int step = 0; step < size_ - 1; ++step) {
    std::vector<at::Tensor> send{out}, recv{incoming};
    impl_->run(stats_, "gradient reduce-scatter", [&] {
      auto sent = impl_->pg->send(send, (rank_ + 1) % size_, step);
      impl_->wait(impl_->pg->recv(recv, (rank_ + size_ - 1) % size_, step), "gradient reduce-scatter");
      return sent;
    });
    pack(index(rank_ - step - 2), out);
    out.add_(incoming);
  }
  out.div_(static_cast<double>(size_));
  stats_.reduce_scatter_bytes += (size_ - 1) * w * out.element_size();
}

void Group::allgather_ring(const at::Tensor& mine, const ChunkFn& unpack) {
  TORCH_CHECK(mine.is_contiguous() && mine.dim() == 1, "allgather_ring: `mine` must be a contiguous 1-D tensor");
  if (size_ == 1) return;
  // Step s passes on the chunk of rank (r − s) and receives that of rank (r − s − 1).
  at::Tensor a = mine, b = at::empty_like(mine), spare = at::empty_like(mine);
  for (int step = 0; step < size_ - 1; ++step) {
    std::vector<at::Tensor> send{a}, recv{b};
    impl_->run(stats_, "weights all-gather", [&] {
      auto sent = impl_->pg->send(send, (rank_ + 1) % size_, 1000 + step);
      impl_->wait(impl_->pg->recv(recv, (rank_ + size_ - 1) % size_, 1000 + step), "weights all-gather");
      return sent;
    });
    unpack(((rank_ - step - 1) % size_ + size_) % size_, b);
    a = b;
    std::swap(b, spare);
  }
  stats_.param_allgather_bytes += (size_ - 1) * mine.numel() * mine.element_size();
}

std::vector<double> Group::allgather_doubles(const std::vector<double>& mine) {
  at::Tensor in = at::tensor(mine, at::kDouble);
  at::Tensor out = at::empty({static_cast<int64_t>(mine.size()) * size_}, at::kDouble);
  if (size_ == 1) out.copy_(in);
  else impl_->run(stats_, "all-gather of counters", [&] { return impl_->pg->all_gather_single(out, in); });
  return std::vector<double>(out.data_ptr<double>(), out.data_ptr<double>() + out.numel());
}

void Group::gather_to_leader(const std::string& mine, const BytesFn& take) {
  if (size_ == 1) return;
  const auto lengths = allgather_doubles({static_cast<double>(mine.size())});
  for (int r = 1; r < size_; ++r) {
    const auto n = static_cast<int64_t>(lengths[static_cast<size_t>(r)]);
    if (n == 0) {
      if (rank_ == 0) take(r, at::empty({0}, at::kByte));
      continue;
    }
    if (rank_ == r) {
      std::vector<at::Tensor> t{at::from_blob(const_cast<char*>(mine.data()), {n}, at::kByte)};
      impl_->run(stats_, "optimizer-state gather", [&] { return impl_->pg->send(t, 0, 2000 + r); }, /*checkpoint=*/true);
      stats_.state_gather_bytes += n;
    } else if (rank_ == 0) {
      std::vector<at::Tensor> t{at::empty({n}, at::kByte)};
      impl_->run(stats_, "optimizer-state gather", [&] { return impl_->pg->recv(t, r, 2000 + r); }, /*checkpoint=*/true);
      take(r, t[0]);
    }
  }
}

#else  // no c10d in this build

bool available() { return false; }

struct Group::Impl {};

Group::Group(const Env& env, std::chrono::milliseconds) {
  if (env.distributed())
    throw std::runtime_error("this limuon was built without c10d/Gloo (install libgloo-dev and rebuild) and cannot join a job of " +
                             std::to_string(env.world_size) + " ranks");
}
Group::~Group() = default;
void Group::allreduce_mean(const std::vector<at::Tensor>&, int64_t) {}
double Group::allreduce_sum(double value) { return value; }
void Group::broadcast(const std::vector<at::Tensor>&, int) {}
void Group::barrier() {}
void Group::reduce_scatter_mean(const ChunkFn& pack, const at::Tensor& out) { pack(0, out); }
void Group::allgather_ring(const at::Tensor&, const ChunkFn&) {}
void Group::gather_to_leader(const std::string&, const BytesFn&) {}
std::vector<double> Group::allgather_doubles(const std::vector<double>& mine) { return mine; }

#endif

std::vector<int> balance_by_cost(const std::vector<double>& cost, int ranks) {
  std::vector<size_t> order(cost.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  std::vector<int> owner(cost.size(), 0);
  for (size_t i : order) {
    const auto r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[static_cast<size_t>(r)] += cost[i];
  }
  return owner;
}

std::vector<int> Group::assign(const std::vector<at::Tensor>& mats, const OrthSpec& spec) const {
  std::vector<double> cost(mats.size());
  for (size_t i = 0; i < mats.size(); ++i)
    cost[i] = orth_flops(spec.method, mats[i].size(0), mats[i].size(1), spec.rank, spec.oversample, spec.power_iters);
  return balance_by_cost(cost, size_);
}

std::vector<at::Tensor> Group::orthogonalize_local(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                   const std::vector<uint64_t>& seeds) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = orthogonalize_many_local(mats, spec, seeds);
  stats_.orth_local_s += seconds_since(t0);
  stats_.orth_local_matrices += static_cast<int64_t>(mats.size());
  return r;
}

std::vector<at::Tensor> Group::orthogonalize_sharded(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                     const std::vector<uint64_t>& seeds) {
  stats_.orth_total_matrices += static_cast<int64_t>(mats.size());
  auto local = [&](const std::vector<at::Tensor>& m, const std::vector<uint64_t>& s) { return orthogonalize_local(m, spec, s); };
  bool shardable = size_ > 1 && !mats.empty() && (spec.method != Orthogonalizer::rsvd || !seeds.empty());
  for (const auto& m : mats)
    shardable = shardable && m.dim() == 2 && m.scalar_type() == mats[0].scalar_type() && m.device() == mats[0].device();
  // Unseeded rsvd draws its sketches by position within a batch, which sharding would change;
  // mixed dtypes would need one exchange each. Both are computed on every rank instead.
  if (!shardable) return local(mats, seeds);

  const auto owner = assign(mats, spec);
  std::vector<at::Tensor> my_mats;
  std::vector<uint64_t> my_seeds;
  std::vector<int64_t> count(static_cast<size_t>(size_), 0);
  for (size_t i = 0; i < mats.size(); ++i) {
    count[static_cast<size_t>(owner[i])] += mats[i].numel();
    if (owner[i] != rank_) continue;
    my_mats.push_back(mats[i]);
    if (!seeds.empty()) my_seeds.push_back(seeds[i]);
  }
  const auto mine = my_mats.empty() ? std::vector<at::Tensor>{} : local(my_mats, my_seeds);
  // One all-gather of equal-length buffers (Gloo's requirement), padded to the largest share.
  const int64_t width = *std::max_element(count.begin(), count.end());
  const auto opts = mats[0].options();
  at::Tensor send = at::zeros({width}, opts);
  int64_t off = 0;
  for (const auto& r : mine) {
    send.narrow(0, off, r.numel()).copy_(r.reshape(-1));
    off += r.numel();
  }
  std::vector<at::Tensor> gathered;
#ifdef LIMUON_HAVE_DIST
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < size_; ++r) out[0].push_back(at::empty({width}, opts));
  std::vector<at::Tensor> in{send};
  impl_->run(stats_, "orthogonalization all-gather", [&] { return impl_->pg->allgather(out, in); });
  gathered = out[0];
#endif
  for (int r = 0; r < size_; ++r)
    if (r != rank_) stats_.allgather_bytes += count[static_cast<size_t>(r)] * send.element_size();
  std::vector<at::Tensor> result(mats.size());
  std::vector<int64_t> at_off(static_cast<size_t>(size_), 0);
  size_t next_mine = 0;
  for (size_t i = 0; i < mats.size(); ++i) {
    const auto r = static_cast<size_t>(owner[i]);
    const int64_t n = mats[i].numel();
    result[i] = owner[i] == rank_ ? mine[next_mine++] : gathered[r].narrow(0, at_off[r], n).view(mats[i].sizes());
    at_off[r] += n;
  }
  return result;
}

std::vector<at::Tensor> Group::orthogonalize_timed(const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                   const std::vector<uint64_t>& seeds) {
  stats_.orth_total_matrices += static_cast<int64_t>(mats.size());
  return orthogonalize_local(mats, spec, seeds);
}

ShardedOrthogonalization::ShardedOrthogonalization(Group& group, bool share) {
  previous_ = set_orth_executor([&group, share](const std::vector<at::Tensor>& mats, const OrthSpec& spec,
                                                const std::vector<uint64_t>& seeds) {
    return share ? group.orthogonalize_sharded(mats, spec, seeds) : group.orthogonalize_timed(mats, spec, seeds);
  });
}

ShardedOrthogonalization::~ShardedOrthogonalization() { set_orth_executor(std::move(previous_)); }

}  // namespace limuon::dist
