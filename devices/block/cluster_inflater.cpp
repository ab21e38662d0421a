#include "devices/block/cluster_inflater.hpp"

#include <libdeflate.h>
#include <zstd.h>

namespace kiln::block {

void ClusterInflater::DeflateDeleter::operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
void ClusterInflater::ZstdDeleter::operator()(ZSTD_DCtx_s* d) const { ZSTD_freeDCtx(d); }

ClusterInflater::ClusterInflater(ClusterInflater&&) noexcept = default;
ClusterInflater& ClusterInflater::operator=(ClusterInflater&&) noexcept = default;
ClusterInflater::~ClusterInflater() = default;

Result<ClusterInflater> ClusterInflater::create(Compression type) {
    ClusterInflater c;
    c.type_ = type;
    if (type == Compression::Zlib) {
        // Raw deflate, no zlib header, any window size (QEMU writes 4 KiB windows).
        c.deflate_.reset(libdeflate_alloc_decompressor());
        if (!c.deflate_) return fail("libdeflate: cannot set up a decompressor");
    } else {
        c.zstd_.reset(ZSTD_createDCtx());
        if (!c.zstd_) return fail("zstd: cannot set up a decompression context");
        // A cluster is at most 2 MiB, and so is any window a frame of one needs; a hostile
        // frame asking for more (up to 128 MiB by default) is refused, not allocated.
        if (ZSTD_isError(ZSTD_DCtx_setParameter(c.zstd_.get(), ZSTD_d_windowLogMax, 22)))
            return fail("zstd: cannot limit the window size");
    }
    return c;
}

Result<void> ClusterInflater::inflate(std::span<const uint8_t> in, std::span<uint8_t> out) {
    if (type_ == Compression::Zlib) {
        size_t used = 0, made = 0;
        switch (libdeflate_deflate_decompress_ex(deflate_.get(), in.data(), in.size(), out.data(), out.size(), &used,
                                                 &made)) {
        case LIBDEFLATE_SUCCESS:
            if (made == out.size()) return {};
            return fail("the deflate stream ends after {} of the cluster's {} bytes", made, out.size());
        case LIBDEFLATE_INSUFFICIENT_SPACE:
            return fail("the deflate stream holds more than the cluster's {} bytes", out.size());
        default: return fail("the deflate stream is broken");
        }
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

Result<std::span<const uint8_t>> InflateScratch::inflate(Compression type, std::span<const uint8_t> in,
                                                         size_t cluster_size) {
    auto& inflater = type == Compression::Zlib ? deflate_ : zstd_;
    if (!inflater) inflater = KILN_TRY(ClusterInflater::create(type));
    if (out_.size() < cluster_size) {
        out_ = AlignedBuffer(cluster_size, 64);
        if (!out_) return fail("out of memory for a {}-byte cluster", cluster_size);
    }
    KILN_TRY(inflater->inflate(in, {out_.data(), cluster_size}));
    return std::span<const uint8_t>(out_.data(), cluster_size);
}

} // namespace kiln::block
