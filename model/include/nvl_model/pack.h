/* The packed GGUF layout: what `nvgguf pack` and `nvload-setup write` produce.
 *
 * A packed file is an ordinary GGUF (any reader opens it) with general.alignment = 4096 and its
 * tensors stored in this order: every tensor that belongs to no layer ("globals": token_embd,
 * output_norm, output, rope_freqs, ...) in their original order, then blk.0.*, blk.1.*, ... each
 * layer's tensors in their original order. Every tensor starts on a 4 KiB boundary, so each
 * layer is one contiguous extent that starts on a block boundary of any drive with 512 B or
 * 4 KiB LBAs (or any LBA size up to the alignment), and a layer is read with one request and no
 * scatter copy. Metadata and tensor bytes are copied unchanged; only general.alignment and the
 * data offsets differ from the source. */
#ifndef NVL_MODEL_PACK_H
#define NVL_MODEL_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The alignment of a packed file: the largest LBA size in common use, and the page size. */
#define NVL_PACK_ALIGNMENT 4096u

/* The layer a tensor belongs to: N for a name "blk.N.<anything>" (N a decimal number without
 * leading zeros below 1 000 000), or -1 for a global tensor. */
int32_t nvl_pack_tensor_layer(const char *name);

/* True when g is already laid out as described above (alignment a multiple of 4096, data in
 * tensor-info order with globals first and layers 0..n-1 each contiguous and in order, with no
 * layer missing). When false and why is not NULL, why says what is not (one line). */
bool nvl_gguf_is_packed(const struct nvl_gguf *g, char *why, size_t why_len);

/* A writer that produces the packed form of g: all of g's metadata (general.alignment set to
 * 4096) and its tensors in packed order, whose bytes are read from g's mapping when the writer
 * writes. g must hold every tensor's bytes (a mapped file, not a prefix) and outlive the
 * writer. Returns 0 or -errno with the reason in err. */
int nvl_gguf_pack_writer(const struct nvl_gguf *g, struct nvl_gguf_writer **out, char *err,
                         size_t err_len);

/* Packs the file at in_path into out_path (created or truncated; removed on failure). Refuses
 * out_path naming the same file as in_path (-EINVAL). Returns 0 or -errno with the reason in
 * err. */
int nvl_gguf_pack_file(const char *in_path, const char *out_path, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
