#include "devices/block/cluster_inflater.hpp"

#include <zlib.h>
#include <zstd.h>

#include <string>

namespace kiln::block {

void ClusterInflater::ZlibDeleter::operator()(z_stream_s* s) const {
    inflateEnd(s);
    delete s;
}
void ClusterInflater::ZstdDeleter::operator()(ZSTD_DCtx_s* d) const { ZSTD_freeDCtx(d); }

ClusterInflater::ClusterInflater(ClusterInflater&&) noexcept = default;
ClusterInflater& ClusterInflater::operator=(ClusterInflater&&) noexcept = default;
ClusterInflater::~ClusterInflater() = default;

Result<ClusterInflater> ClusterInflater::create(Compression type) {
    ClusterInflater c;
    c.type_ = type;
    if (type == Compression::Zlib) {
        auto s = std::make_unique<z_stream_s>();
        // Raw deflate, no zlib header. QEMU writes with a 4 KiB window (-12); the
        // largest window (-15) reads that and any other writer's streams.
        if (inflateInit2(s.get(), -15) != Z_OK) return fail("zlib: cannot set up inflate");
        c.zlib_.reset(s.release());
    } else {
        c.zstd_.reset(ZSTD_createDCtx());
        if (!c.zstd_) return fail("zstd: cannot set up a decompression context");
    }
    return c;
}

Result<void> ClusterInflater::inflate(std::span<const uint8_t> in, std::span<uint8_t> out) {
    if (type_ == Compression::Zlib) {
        z_stream_s* s = zlib_.get();
        if (inflateReset(s) != Z_OK) return fail("zlib: inflateReset failed");
        s->next_in = const_cast<Bytef*>(in.data()); // zlib's API is not const-correct
        s->avail_in = static_cast<uInt>(in.size());
        s->next_out = out.data();
        s->avail_out = static_cast<uInt>(out.size());
        const int rc = ::inflate(s, Z_FINISH);
        // Z_BUF_ERROR with a full output: the stream goes on past the cluster's end, which
        // QEMU accepts too (its writer never makes one); the cluster itself is whole.
        if ((rc == Z_STREAM_END || rc == Z_BUF_ERROR) && s->avail_out == 0) return {};
        if (rc == Z_STREAM_END || rc == Z_BUF_ERROR)
            return fail("the deflate stream ends after {} of the cluster's {} bytes", out.size() - s->avail_out,
                        out.size());
        return fail("the deflate stream is broken ({})", s->msg ? std::string(s->msg) : fmt::format("zlib error {}", rc));
    }
    ZSTD_DCtx* d = zstd_.get();
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    ZSTD_outBuffer ob{out.data(), out.size(), 0};
    size_t rc = 0;
    while (ob.pos < ob.size) {
        const size_t in_before = ib.pos, out_before = ob.pos;
        rc = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(rc)) return fail("the zstd frame is broken ({})", ZSTD_getErrorName(rc));
        if (ib.pos == in_before && ob.pos == out_before)
            return fail("the zstd frame ends after {} of the cluster's {} bytes", ob.pos, out.size());
    }
    // A full cluster whose frame has not ended (QEMU's rule too).
    if (rc != 0) return fail("the zstd frame does not end with the cluster's {} bytes", out.size());
    return {};
}

} // namespace kiln::block
