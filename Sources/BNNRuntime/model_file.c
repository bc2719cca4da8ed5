/* model_file.c — packed models (.bnn): a safetensors file whose metadata holds the format, the version, the
 * graph (JSON) and a checksum over graph and tensors.
 *
 * The reader believes nothing before checking it: the safetensors layer first (safetensors.c), then the
 * metadata, the checksum (so a corrupted byte anywhere is reported as corruption rather than as whatever it
 * happened to change), the graph's JSON against its schema (any key order, no unknown or duplicate keys,
 * integers within 64 bits), and every layer against its op: buffers, sizes, and the dtype and shape of each
 * tensor it needs. The kernel program is built later from a model that passed (program.c). */
#include "runtime_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const op_names[] = {"conv",    "bconv",  "shortcut", "bmaxpool",       "maxpool",
                                       "avgpool", "affine", "global_avgpool", "linear"};
enum { OP_COUNT = (int)(sizeof op_names / sizeof op_names[0]) };

const char *bnn_op_name(bnn_op op) { return (unsigned)op < OP_COUNT ? op_names[op] : "?"; }

static const char *const format_name = "swift-bnn-packed";

/* The allocation behind a bnn_packed_model: the public part first. */
typedef struct model_storage {
    bnn_packed_model public;
    uint8_t *bytes; /* the file, owned: the tensors' data points into it */
    bnn_safetensors *file;
    bnn_layer *layers;
    char *pool; /* decoded strings of the graph */
} model_storage;

void bnn_packed_model_free(bnn_packed_model *model) {
    if (model == NULL) return;
    model_storage *storage = (model_storage *)model;
    bnn_safetensors_free(storage->file);
    free(storage->layers);
    free(storage->pool);
    free(storage->bytes);
    free(storage);
}

static bool text_equals(bnn_text_view text, const char *literal) {
    return text.bytes != NULL && text.length == strlen(literal) && memcmp(text.bytes, literal, text.length) == 0;
}

static int compare_text(bnn_text_view a, bnn_text_view b) {
    const size_t n = a.length < b.length ? a.length : b.length;
    const int c = n == 0 ? 0 : memcmp(a.bytes, b.bytes, n);
    if (c != 0) return c;
    return a.length < b.length ? -1 : a.length > b.length;
}

static int by_name(const void *a, const void *b) {
    return compare_text((*(const bnn_tensor_view *const *)a)->name, (*(const bnn_tensor_view *const *)b)->name);
}

/* ---- Checksum --------------------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t hash, const void *bytes, size_t length) {
    const uint8_t *p = bytes;
    for (size_t i = 0; i < length; i++) {
        hash ^= p[i];
        hash *= UINT64_C(0x100000001b3);
    }
    return hash;
}

/* FNV-1a (64 bit) over the graph text, then each tensor in the byte order of the names: name, dtype name, the
 * dimensions in decimal joined by ",", the bytes — what PackedModel.checksum in Swift computes. */
static uint64_t checksum(bnn_text_view graph, const bnn_tensor_view *const *sorted, size_t count) {
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    hash = fnv1a(hash, graph.bytes, graph.length);
    for (size_t i = 0; i < count; i++) {
        const bnn_tensor_view *t = sorted[i];
        hash = fnv1a(hash, t->name.bytes, t->name.length);
        const char *dtype = bnn_dtype_name(t->dtype);
        hash = fnv1a(hash, dtype, strlen(dtype));
        for (int64_t d = 0; d < t->rank; d++) {
            char digits[32];
            int n = snprintf(digits, sizeof digits, d == 0 ? "%lld" : ",%lld", (long long)t->shape[d]);
            hash = fnv1a(hash, digits, (size_t)n);
        }
        hash = fnv1a(hash, t->data, t->size);
    }
    return hash;
}

/* ---- The graph's JSON -------------------------------------------------------------------------------- */

/* State while reading and checking the graph. Messages start with "<label>: ". */
typedef struct graph_parser {
    bnn_json_reader reader;
    bnn_text *error;
    const char *label;
    const bnn_safetensors *file;
} graph_parser;

static bool graph_fail(graph_parser *gp, const char *format, ...) __attribute__((format(printf, 2, 3)));
static bool graph_fail(graph_parser *gp, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    bnn_text_vprintf(gp->error, format, arguments);
    va_end(arguments);
    return false;
}

/* "<label>: metadata `graph` is not a valid graph: " — the start of every schema message. */
static void schema_prefix(graph_parser *gp) {
    bnn_text_printf(gp->error, "%s: metadata `graph` is not a valid graph: ", gp->label);
}

static bool malformed(graph_parser *gp) {
    schema_prefix(gp);
    return graph_fail(gp, "the JSON could not be read after it was checked (internal error)");
}

/* `where` is "graph" or "layers[i]". */
static bool wrong_kind(graph_parser *gp, const char *where, const char *key, bnn_json_kind kind, const char *expected) {
    schema_prefix(gp);
    return graph_fail(gp, "%s: key \"%s\" is %s, expected %s", where, key, bnn_json_kind_name(kind), expected);
}

/* An integer value (consumed). `optional` accepts null as absent (*present false). */
static bool read_integer(graph_parser *gp, const char *where, const char *key, bool optional, int64_t *value,
                         bool *present) {
    const bnn_json_kind kind = bnn_json_peek(&gp->reader);
    if (optional && kind == BNN_JSON_NULL) {
        if (!bnn_json_skip(&gp->reader, NULL)) return malformed(gp);
        *present = false;
        return true;
    }
    if (kind != BNN_JSON_NUMBER) return wrong_kind(gp, where, key, kind, "an integer");
    bnn_text_view raw;
    if (!bnn_json_number(&gp->reader, &raw)) return malformed(gp);
    const int result = bnn_json_integer(raw, value);
    if (result != 0) {
        schema_prefix(gp);
        graph_fail(gp, "%s: key \"%s\" is ", where, key);
        bnn_text_quote(gp->error, raw.bytes, raw.length);
        return graph_fail(gp, result == 1 ? ", expected an integer" : ", outside the 64-bit integers");
    }
    *present = true;
    return true;
}

static bool read_bool(graph_parser *gp, const char *where, const char *key, int *value) {
    const bnn_json_kind kind = bnn_json_peek(&gp->reader);
    if (kind == BNN_JSON_NULL) {
        if (!bnn_json_skip(&gp->reader, NULL)) return malformed(gp);
        *value = -1;
        return true;
    }
    bool flag;
    if (kind != BNN_JSON_BOOL) return wrong_kind(gp, where, key, kind, "a boolean");
    if (!bnn_json_bool(&gp->reader, &flag)) return malformed(gp);
    *value = flag ? 1 : 0;
    return true;
}

static bool read_string(graph_parser *gp, const char *where, const char *key, bool optional, bnn_text_view *value) {
    const bnn_json_kind kind = bnn_json_peek(&gp->reader);
    if (optional && kind == BNN_JSON_NULL) {
        if (!bnn_json_skip(&gp->reader, NULL)) return malformed(gp);
        *value = (bnn_text_view){NULL, 0};
        return true;
    }
    if (kind != BNN_JSON_STRING) return wrong_kind(gp, where, key, kind, "a string");
    return bnn_json_string(&gp->reader, value) ? true : malformed(gp);
}

static bool unknown_key(graph_parser *gp, const char *where, bnn_text_view key) {
    schema_prefix(gp);
    graph_fail(gp, "%s: unknown key \"", where);
    bnn_text_quote(gp->error, key.bytes, key.length);
    return graph_fail(gp, "\"");
}

static bool twice(graph_parser *gp, const char *where, const char *key) {
    schema_prefix(gp);
    return graph_fail(gp, "%s: key \"%s\" appears twice", where, key);
}

static bool missing(graph_parser *gp, const char *where, const char *key) {
    schema_prefix(gp);
    return graph_fail(gp, "%s: key \"%s\" is missing", where, key);
}

/* The keys of a layer object, in the order of the fields they fill. */
enum {
    K_NAME, K_OP, K_INPUT, K_RESIDUAL, K_OUTPUT, K_OUTPUT_BITS, K_HEIGHT, K_WIDTH, K_CHANNELS, K_OUT_CHANNELS,
    K_KERNEL, K_STRIDE, K_PADDING, K_RELU_BEFORE, K_RELU_AFTER, K_COUNT
};
static const char *const layer_keys[K_COUNT] = {
    "name", "op", "input", "residual", "output", "output_bits", "height", "width", "channels", "out_channels",
    "kernel", "stride", "padding", "relu_before", "relu_after"};
static const bool layer_key_required[K_COUNT] = {
    true, true, true, false, false, false, true, true, true, true, false, false, false, false, false};

/* Integer fields are read as int64 and narrowed only after the range checks (validate_layer); which optional
 * fields were given (null counts as absent). */
typedef struct layer_values {
    int64_t input, residual, output, output_bits;
    bool has_residual, has_output, has_output_bits, has_kernel, has_stride, has_padding;
} layer_values;

static bool read_layer(graph_parser *gp, size_t index, bnn_layer *layer, layer_values *wide) {
    char where[48];
    snprintf(where, sizeof where, "layers[%zu]", index);
    const bnn_json_kind kind = bnn_json_peek(&gp->reader);
    if (kind != BNN_JSON_OBJECT) {
        schema_prefix(gp);
        return graph_fail(gp, "%s is %s, expected an object", where, bnn_json_kind_name(kind));
    }
    if (!bnn_json_enter(&gp->reader)) return malformed(gp);
    *layer = (bnn_layer){.residual = -1, .output = -1, .output_bits = -1, .kernel = -1, .stride = -1, .padding = -1,
                         .relu_before = -1, .relu_after = -1};
    *wide = (layer_values){.input = -1, .residual = -1, .output = -1, .output_bits = -1};
    bool seen[K_COUNT] = {false};
    bool first = true, ok = true;
    bnn_text_view key;
    while (bnn_json_next_key(&gp->reader, &first, &key, &ok)) {
        int k = -1;
        for (int i = 0; i < K_COUNT; i++)
            if (text_equals(key, layer_keys[i])) k = i;
        if (k < 0) return unknown_key(gp, where, key);
        if (seen[k]) return twice(gp, where, layer_keys[k]);
        seen[k] = true;
        const char *name = layer_keys[k];
        bool present = true;
        int64_t value = -1;
        switch (k) {
        case K_NAME:
            if (!read_string(gp, where, name, false, &layer->name)) return false;
            break;
        case K_OP: {
            bnn_text_view op;
            if (!read_string(gp, where, name, false, &op)) return false;
            int found = -1;
            for (int i = 0; i < OP_COUNT; i++)
                if (text_equals(op, op_names[i])) found = i;
            if (found < 0) {
                schema_prefix(gp);
                graph_fail(gp, "%s: unknown op \"", where);
                bnn_text_quote(gp->error, op.bytes, op.length);
                graph_fail(gp, "\" (known:");
                for (int i = 0; i < OP_COUNT; i++) graph_fail(gp, i == 0 ? " %s" : ", %s", op_names[i]);
                return graph_fail(gp, ")");
            }
            layer->op = (bnn_op)found;
            break;
        }
        case K_RELU_BEFORE:
        case K_RELU_AFTER:
            if (!read_bool(gp, where, name, k == K_RELU_BEFORE ? &layer->relu_before : &layer->relu_after)) return false;
            break;
        default:
            if (!read_integer(gp, where, name, !layer_key_required[k], &value, &present)) return false;
            if (!present) value = -1;
            switch (k) {
            case K_INPUT: wide->input = value; break;
            case K_RESIDUAL: wide->residual = value, wide->has_residual = present; break;
            case K_OUTPUT: wide->output = value, wide->has_output = present; break;
            case K_OUTPUT_BITS: wide->output_bits = value, wide->has_output_bits = present; break;
            case K_HEIGHT: layer->height = value; break;
            case K_WIDTH: layer->width = value; break;
            case K_CHANNELS: layer->channels = value; break;
            case K_OUT_CHANNELS: layer->out_channels = value; break;
            case K_KERNEL: layer->kernel = value, wide->has_kernel = present; break;
            case K_STRIDE: layer->stride = value, wide->has_stride = present; break;
            case K_PADDING: layer->padding = value, wide->has_padding = present; break;
            }
        }
    }
    if (!ok) return malformed(gp);
    for (int k = 0; k < K_COUNT; k++)
        if (layer_key_required[k] && !seen[k]) return missing(gp, where, layer_keys[k]);
    return true;
}

/* What a layer of each op needs: suffixes, dtypes and which shape (see expected_shape). */
typedef struct tensor_rule {
    const char *suffix;
    bnn_dtype dtype;
    enum { SHAPE_CONV_WEIGHT, SHAPE_BITS, SHAPE_OUT, SHAPE_IN, SHAPE_LINEAR_WEIGHT } shape;
} tensor_rule;

static int rules_of(bnn_op op, const tensor_rule **rules) {
    static const tensor_rule conv[] = {{"weight", BNN_DTYPE_F32, SHAPE_CONV_WEIGHT},
                                       {"scale", BNN_DTYPE_F32, SHAPE_OUT},
                                       {"bias", BNN_DTYPE_F32, SHAPE_OUT}};
    static const tensor_rule bconv[] = {{"bits", BNN_DTYPE_U64, SHAPE_BITS},
                                        {"prescale", BNN_DTYPE_F32, SHAPE_OUT},
                                        {"scale", BNN_DTYPE_F32, SHAPE_OUT},
                                        {"bias", BNN_DTYPE_F32, SHAPE_OUT}};
    static const tensor_rule per_channel[] = {{"scale", BNN_DTYPE_F32, SHAPE_IN}, {"bias", BNN_DTYPE_F32, SHAPE_IN}};
    static const tensor_rule linear[] = {{"weight", BNN_DTYPE_F32, SHAPE_LINEAR_WEIGHT},
                                         {"bias", BNN_DTYPE_F32, SHAPE_OUT}};
    switch (op) {
    case BNN_OP_CONV: *rules = conv; return 3;
    case BNN_OP_BCONV: *rules = bconv; return 4;
    case BNN_OP_AFFINE:
    case BNN_OP_GLOBAL_AVGPOOL: *rules = per_channel; return 2;
    case BNN_OP_LINEAR: *rules = linear; return 2;
    default: *rules = NULL; return 0;
    }
}

/* The shape a rule asks of a layer (sizes already within BNN_MAX_LAYER_SIZE); false if it overflows. */
static bool expected_shape(const bnn_layer *layer, const tensor_rule *rule, int64_t shape[4], int64_t *rank) {
    const int64_t k = layer->kernel < 0 ? 1 : layer->kernel, o = layer->out_channels, c = layer->channels;
    switch (rule->shape) {
    case SHAPE_CONV_WEIGHT: shape[0] = o, shape[1] = k, shape[2] = k, shape[3] = c, *rank = 4; return true;
    case SHAPE_BITS: {
        int64_t rows;
        if (!bnn_mul_nonneg(o, k, &rows) || !bnn_mul_nonneg(rows, k, &rows)) return false;
        shape[0] = rows, shape[1] = (c + 63) / 64, *rank = 2;
        return true;
    }
    case SHAPE_OUT: shape[0] = o, *rank = 1; return true;
    case SHAPE_IN: shape[0] = c, *rank = 1; return true;
    case SHAPE_LINEAR_WEIGHT: shape[0] = o, shape[1] = c, *rank = 2; return true;
    }
    return false;
}

/* "<label>: layer "<name>"" — the start of every message about one layer. */
static void layer_prefix(graph_parser *gp, const bnn_layer *layer) {
    bnn_text_printf(gp->error, "%s: layer \"", gp->label);
    bnn_text_quote(gp->error, layer->name.bytes, layer->name.length);
    bnn_text_printf(gp->error, "\"");
}

static bool check_size(graph_parser *gp, const bnn_layer *layer, const char *key, int64_t value, int64_t low) {
    if (value >= low && value <= BNN_MAX_LAYER_SIZE) return true;
    layer_prefix(gp, layer);
    return graph_fail(gp, " (%s): `%s` = %lld is outside %lld...%lld", bnn_op_name(layer->op), key, (long long)value,
                      (long long)low, (long long)BNN_MAX_LAYER_SIZE);
}

/* Buffers, sizes and per-image bounds of one layer; narrows the buffer ids. */
static bool validate_layer(graph_parser *gp, bnn_layer *layer, const layer_values *wide) {
    const struct {
        const char *key;
        int64_t value;
        bool present;
        int *field;
    } buffers[4] = {{"input", wide->input, true, &layer->input},
                    {"residual", wide->residual, wide->has_residual, &layer->residual},
                    {"output", wide->output, wide->has_output, &layer->output},
                    {"output_bits", wide->output_bits, wide->has_output_bits, &layer->output_bits}};
    for (int i = 0; i < 4; i++) {
        if (!buffers[i].present) {
            *buffers[i].field = -1;
            continue;
        }
        if (buffers[i].value < 0 || buffers[i].value > BNN_MAX_BUFFER) {
            layer_prefix(gp, layer);
            return graph_fail(gp, ": buffer `%s` = %lld is outside 0...%d", buffers[i].key, (long long)buffers[i].value,
                              BNN_MAX_BUFFER);
        }
        *buffers[i].field = (int)buffers[i].value;
    }
    if (!check_size(gp, layer, "height", layer->height, 1) || !check_size(gp, layer, "width", layer->width, 1) ||
        !check_size(gp, layer, "channels", layer->channels, 1) ||
        !check_size(gp, layer, "out_channels", layer->out_channels, 1))
        return false;
    /* Absent optional sizes are −1 from here on. */
    if (!wide->has_kernel) layer->kernel = -1;
    else if (!check_size(gp, layer, "kernel", layer->kernel, 1)) return false;
    if (!wide->has_stride) layer->stride = -1;
    else if (!check_size(gp, layer, "stride", layer->stride, 1)) return false;
    if (!wide->has_padding) layer->padding = -1;
    else if (!check_size(gp, layer, "padding", layer->padding, 0)) return false;

    /* Bounds on what one image occupies in the engine's buffers: the input, and a bound on the output (a window
     * at every pixel of the padded input, every output channel). */
    const int64_t p = layer->padding < 0 ? 0 : layer->padding;
    const int64_t wide_c = layer->channels > layer->out_channels ? layer->channels : layer->out_channels;
    int64_t input_values, output_bound;
    const bool input_fits = bnn_mul_nonneg(layer->height, layer->width, &input_values) &&
                            bnn_mul_nonneg(input_values, layer->channels, &input_values) &&
                            input_values <= BNN_MAX_IMAGE_VALUES;
    const bool output_fits = bnn_mul_nonneg(layer->height + 2 * p, layer->width + 2 * p, &output_bound) &&
                             bnn_mul_nonneg(output_bound, wide_c, &output_bound) &&
                             output_bound <= BNN_MAX_IMAGE_VALUES;
    if (!input_fits || !output_fits) {
        layer_prefix(gp, layer);
        return graph_fail(gp,
                          " (%s): %lld×%lld pixels (padding %lld) of %lld and %lld channels exceed the limit of %lld "
                          "values per image",
                          bnn_op_name(layer->op), (long long)layer->height, (long long)layer->width, (long long)p,
                          (long long)layer->channels, (long long)layer->out_channels, (long long)BNN_MAX_IMAGE_VALUES);
    }
    return true;
}

/* The tensor named `name`, by binary search over the names in byte order. */
static const bnn_tensor_view *find_tensor(const bnn_tensor_view *const *sorted, size_t count, bnn_text_view name,
                                          size_t *at) {
    size_t low = 0, high = count;
    while (low < high) {
        const size_t middle = low + (high - low) / 2;
        const int c = compare_text(sorted[middle]->name, name);
        if (c == 0) {
            *at = middle;
            return sorted[middle];
        }
        if (c < 0) low = middle + 1;
        else high = middle;
    }
    return NULL;
}

/* The tensors of every layer: present, of the dtype and shape its op needs, each claimed by one layer only;
 * then no tensor may be left over. */
/* The bits of little-endian float32 number `i` at `data`. */
static uint32_t f32_bits(const uint8_t *data, size_t i) {
    const uint8_t *p = data + 4 * i;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The index of the first NaN or infinity among `count` little-endian float32 values, decided on the bits (an
 * all-ones exponent); `count` when every value is finite. */
static size_t first_non_finite_f32(const uint8_t *data, size_t count) {
    for (size_t i = 0; i < count; i++)
        if ((f32_bits(data, i) & 0x7F800000u) == 0x7F800000u) return i;
    return count;
}

static bool check_tensors(graph_parser *gp, bnn_layer *layers, size_t layer_count, const bnn_tensor_view *const *sorted,
                          size_t tensor_count) {
    bool ok = false;
    size_t longest = 0;
    for (size_t i = 0; i < layer_count; i++)
        if (layers[i].name.length > longest) longest = layers[i].name.length;
    char *name = malloc(longest + 32);
    unsigned char *claimed = calloc(tensor_count + 1, 1);
    if (name == NULL || claimed == NULL) {
        graph_fail(gp, "%s: out of memory while checking the tensors", gp->label);
        goto done;
    }
    for (size_t i = 0; i < layer_count; i++) {
        bnn_layer *layer = &layers[i];
        const tensor_rule *rules;
        const int count = rules_of(layer->op, &rules);
        layer->tensor_count = count;
        for (int r = 0; r < count; r++) {
            const size_t suffix = strlen(rules[r].suffix);
            if (layer->name.length > 0) memcpy(name, layer->name.bytes, layer->name.length);
            name[layer->name.length] = '.';
            memcpy(name + layer->name.length + 1, rules[r].suffix, suffix + 1);
            const bnn_text_view full = {name, layer->name.length + 1 + suffix};
            int64_t shape[4], rank = 0;
            if (!expected_shape(layer, &rules[r], shape, &rank)) {
                layer_prefix(gp, layer);
                graph_fail(gp, " (%s): the shape of its tensor \"%s\" overflows 64-bit sizes", bnn_op_name(layer->op),
                           rules[r].suffix);
                goto done;
            }
            size_t at = 0;
            const bnn_tensor_view *tensor = find_tensor(sorted, tensor_count, full, &at);
            if (tensor != NULL && claimed[at]) {
                bnn_text_printf(gp->error, "%s: two layers are named \"", gp->label);
                bnn_text_quote(gp->error, layer->name.bytes, layer->name.length);
                graph_fail(gp, "\"");
                goto done;
            }
            if (tensor == NULL) {
                layer_prefix(gp, layer);
                graph_fail(gp, " (%s) needs tensor \"", bnn_op_name(layer->op));
                bnn_text_quote(gp->error, full.bytes, full.length);
                graph_fail(gp, "\", which is missing");
                goto done;
            }
            claimed[at] = 1;
            bool same = tensor->dtype == rules[r].dtype && tensor->rank == rank;
            for (int64_t d = 0; same && d < rank; d++) same = tensor->shape[d] == shape[d];
            if (!same) {
                bnn_text_printf(gp->error, "%s: tensor \"", gp->label);
                bnn_text_quote(gp->error, full.bytes, full.length);
                bnn_text_printf(gp->error, "\" is %s ", bnn_dtype_name(tensor->dtype));
                bnn_text_dims(gp->error, tensor->shape, tensor->rank);
                bnn_text_printf(gp->error, ", expected %s ", bnn_dtype_name(rules[r].dtype));
                bnn_text_dims(gp->error, shape, rank);
                graph_fail(gp, " for layer \"");
                bnn_text_quote(gp->error, layer->name.bytes, layer->name.length);
                graph_fail(gp, "\"");
                goto done;
            }
            if (tensor->dtype == BNN_DTYPE_F32) {
                const size_t bad = first_non_finite_f32(tensor->data, tensor->size / 4);
                if (bad < tensor->size / 4) {
                    const uint32_t bits = f32_bits(tensor->data, bad);
                    bnn_text_printf(gp->error, "%s: tensor \"", gp->label);
                    bnn_text_quote(gp->error, full.bytes, full.length);
                    graph_fail(gp, "\" holds %s at element %zu: a packed model's values must be finite",
                               (bits & 0x007FFFFFu) != 0 ? "NaN" : (bits >> 31) ? "-infinity" : "+infinity", bad);
                    goto done;
                }
            }
            layer->tensors[r] = tensor;
        }
    }
    for (size_t i = 0; i < tensor_count; i++) {
        if (claimed[i]) continue;
        bnn_text_printf(gp->error, "%s: tensor \"", gp->label);
        bnn_text_quote(gp->error, sorted[i]->name.bytes, sorted[i]->name.length);
        graph_fail(gp, "\" belongs to no layer of the graph");
        goto done;
    }
    ok = true;
done:
    free(name);
    free(claimed);
    return ok;
}

/* Reads the graph's root object into `model` and `storage` (layers allocated to their exact count). */
static bool read_graph(graph_parser *gp, model_storage *storage, bnn_text_view *input_raw, int64_t *input_count,
                       layer_values **wide_out) {
    bnn_packed_model *model = &storage->public;
    if (bnn_json_peek(&gp->reader) != BNN_JSON_OBJECT) {
        schema_prefix(gp);
        return graph_fail(gp, "the graph is %s, expected an object", bnn_json_kind_name(bnn_json_peek(&gp->reader)));
    }
    bnn_json_enter(&gp->reader);
    enum { G_MODEL, G_VARIANT, G_INPUT, G_CLASSES, G_LAYERS, G_COUNT };
    static const char *const keys[G_COUNT] = {"model", "variant", "input", "classes", "layers"};
    bool seen[G_COUNT] = {false};
    bool first = true, ok = true;
    bnn_text_view key;
    *input_count = 0;
    while (bnn_json_next_key(&gp->reader, &first, &key, &ok)) {
        int k = -1;
        for (int i = 0; i < G_COUNT; i++)
            if (text_equals(key, keys[i])) k = i;
        if (k < 0) return unknown_key(gp, "graph", key);
        if (seen[k]) return twice(gp, "graph", keys[k]);
        seen[k] = true;
        bool present = true;
        switch (k) {
        case G_MODEL:
            if (!read_string(gp, "graph", keys[k], false, &model->model)) return false;
            break;
        case G_VARIANT:
            if (!read_string(gp, "graph", keys[k], true, &model->variant)) return false;
            break;
        case G_CLASSES:
            if (!read_integer(gp, "graph", keys[k], false, &model->classes, &present)) return false;
            break;
        case G_INPUT: {
            const bnn_json_kind kind = bnn_json_peek(&gp->reader);
            if (kind != BNN_JSON_ARRAY) return wrong_kind(gp, "graph", keys[k], kind, "an array of 3 integers");
            const size_t start = gp->reader.position;
            if (!bnn_json_skip(&gp->reader, input_raw)) return malformed(gp);
            const size_t end = gp->reader.position;
            /* Values are range-checked with the rest of the graph; here only integers are kept. */
            gp->reader.position = start;
            bnn_json_enter(&gp->reader);
            bool first_element = true, element_ok = true;
            while (bnn_json_next_element(&gp->reader, &first_element, &element_ok)) {
                bnn_text_view raw;
                int64_t value = 0;
                if (bnn_json_peek(&gp->reader) != BNN_JSON_NUMBER || !bnn_json_number(&gp->reader, &raw) ||
                    bnn_json_integer(raw, &value) != 0) {
                    *input_count = -1; /* not integers: reported with the raw text */
                    break;
                }
                if (*input_count < 3) model->input[*input_count] = value;
                (*input_count)++;
            }
            gp->reader.position = end;
            break;
        }
        case G_LAYERS: {
            const bnn_json_kind kind = bnn_json_peek(&gp->reader);
            if (kind != BNN_JSON_ARRAY) return wrong_kind(gp, "graph", keys[k], kind, "an array of layers");
            /* Count first, so the layers array is allocated once at its exact size. */
            const size_t start = gp->reader.position;
            bnn_json_enter(&gp->reader);
            size_t count = 0;
            bool first_element = true, element_ok = true;
            while (bnn_json_next_element(&gp->reader, &first_element, &element_ok)) {
                if (!bnn_json_skip(&gp->reader, NULL)) return malformed(gp);
                count++;
            }
            if (!element_ok) return malformed(gp);
            if (count > BNN_MAX_LAYERS) {
                schema_prefix(gp);
                return graph_fail(gp, "graph: %zu layers, more than the limit of %d", count, BNN_MAX_LAYERS);
            }
            storage->layers = calloc(count + 1, sizeof(bnn_layer));
            layer_values *wide = calloc(count + 1, sizeof(layer_values));
            if (storage->layers == NULL || wide == NULL) {
                free(wide);
                return graph_fail(gp, "%s: out of memory while reading the graph", gp->label);
            }
            free(*wide_out); /* "layers" twice is refused before this, but stay leak-free regardless */
            gp->reader.position = start;
            bnn_json_enter(&gp->reader);
            first_element = true;
            size_t index = 0;
            bool read_ok = true;
            while (read_ok && index < count && bnn_json_next_element(&gp->reader, &first_element, &element_ok)) {
                read_ok = read_layer(gp, index, &storage->layers[index], &wide[index]);
                index++;
            }
            if (read_ok) {
                /* Past the closing bracket. */
                bnn_json_next_element(&gp->reader, &first_element, &element_ok);
                model->layer_count = count;
            }
            *wide_out = wide;
            if (!read_ok) return false;
            break;
        }
        }
    }
    if (!ok) return malformed(gp);
    for (int k = 0; k < G_COUNT; k++)
        if (k != G_VARIANT && !seen[k]) return missing(gp, "graph", keys[k]);
    return true;
}

/* The graph: its JSON, its schema, the graph-level checks, each layer's, then the tensors — the order of the
 * checks in Swift before. */
static int check_graph(model_storage *storage, const char *label, const bnn_tensor_view *const *sorted, bnn_text *error) {
    bnn_packed_model *model = &storage->public;
    const bnn_safetensors *file = storage->file;
    int status = BNN_INVALID_MODEL;
    graph_parser gp = {.error = error, .label = label, .file = file};
    layer_values *wide = NULL;
    bnn_json_stats stats;
    bnn_json_error json_error;
    const bnn_text_view text = model->graph_text;
    if (!bnn_json_check((const uint8_t *)text.bytes, text.length, &stats, &json_error)) {
        bnn_text_printf(error, "%s: metadata `graph` is not a valid graph: not valid JSON at offset %zu: %s", label,
                        json_error.offset, json_error.message);
        goto done;
    }
    storage->pool = malloc(stats.string_bytes + stats.strings + 1);
    if (storage->pool == NULL) {
        bnn_text_printf(error, "%s: out of memory while reading the graph", label);
        status = BNN_RUN_FAILED;
        goto done;
    }
    gp.reader = (bnn_json_reader){.text = (const uint8_t *)text.bytes, .length = text.length,
                                  .pool = storage->pool, .pool_capacity = stats.string_bytes + stats.strings + 1};
    bnn_text_view input_raw = {"[]", 2};
    int64_t input_count = 0;
    if (!read_graph(&gp, storage, &input_raw, &input_count, &wide)) goto done;
    bool input_ok = input_count == 3;
    for (int i = 0; input_ok && i < 3; i++) input_ok = model->input[i] >= 1 && model->input[i] <= BNN_MAX_INPUT_SIZE;
    if (!input_ok) {
        bnn_text_printf(error, "%s: graph `input` must be [height, width, channels], got ", label);
        bnn_text_quote(error, input_raw.bytes, input_raw.length);
        goto done;
    }
    if (model->classes < 1 || model->layer_count == 0) {
        bnn_text_printf(error, "%s: graph needs at least one layer and one class", label);
        goto done;
    }
    if (model->classes > BNN_MAX_LAYER_SIZE) {
        bnn_text_printf(error, "%s: graph `classes` = %lld is more than %lld", label, (long long)model->classes,
                        (long long)BNN_MAX_LAYER_SIZE);
        goto done;
    }
    for (size_t i = 0; i < model->layer_count; i++)
        if (!validate_layer(&gp, &storage->layers[i], &wide[i])) goto done;
    model->layers = storage->layers;
    if (!check_tensors(&gp, storage->layers, model->layer_count, sorted, file->tensor_count)) goto done;
    status = BNN_OK;
done:
    free(wide);
    return status;
}

/* ---- The whole file ---------------------------------------------------------------------------------- */

static const bnn_metadata_entry *find_metadata(const bnn_safetensors *file, const char *key) {
    for (size_t i = 0; i < file->metadata_count; i++)
        if (text_equals(file->metadata[i].key, key)) return &file->metadata[i];
    return NULL;
}

static int parse_model(model_storage *storage, size_t size, const char *label, bnn_text *error) {
    bnn_packed_model *model = &storage->public;
    bnn_safetensors_error st_error = {0};
    int status = bnn_safetensors_parse(storage->bytes, size, &storage->file, &st_error);
    if (status != BNN_OK) {
        bnn_text_printf(error, "%s: not a readable packed model: safetensors file %s", label, label);
        if (st_error.tensor != NULL) {
            bnn_text_printf(error, ", tensor \"");
            bnn_text_quote(error, st_error.tensor, strlen(st_error.tensor));
            bnn_text_printf(error, "\"");
        }
        bnn_text_printf(error, ": %s", st_error.reason != NULL ? st_error.reason : "out of memory");
        bnn_safetensors_error_clear(&st_error);
        return status;
    }
    const bnn_safetensors *file = storage->file;
    model->file = file;

    const bnn_metadata_entry *format = find_metadata(file, "format");
    if (format == NULL || !text_equals(format->value, format_name)) {
        bnn_text_printf(error, "%s: metadata `format` is ", label);
        if (format != NULL) {
            bnn_text_printf(error, "\"");
            bnn_text_quote(error, format->value.bytes, format->value.length);
            bnn_text_printf(error, "\"");
        } else {
            bnn_text_printf(error, "missing");
        }
        bnn_text_printf(error, ", expected \"%s\" (is this a packed model written by `bnn export`?)", format_name);
        return BNN_INVALID_MODEL;
    }
    const bnn_metadata_entry *version = find_metadata(file, "version");
    if (version == NULL || !(text_equals(version->value, "1") || text_equals(version->value, "2"))) {
        bnn_text_printf(error, "%s: packed model version ", label);
        if (version != NULL) bnn_text_quote(error, version->value.bytes, version->value.length);
        else bnn_text_printf(error, "missing");
        bnn_text_printf(error, " is not supported (this build reads versions 1 and 2)");
        return BNN_INVALID_MODEL;
    }
    model->version = version->value;
    const bnn_metadata_entry *graph = find_metadata(file, "graph");
    if (graph == NULL) {
        bnn_text_printf(error, "%s: metadata has no `graph`", label);
        return BNN_INVALID_MODEL;
    }
    const bnn_metadata_entry *stored = find_metadata(file, "checksum");
    if (stored == NULL) {
        bnn_text_printf(error, "%s: metadata has no `checksum`", label);
        return BNN_INVALID_MODEL;
    }
    model->graph_text = graph->value;

    /* The tensors by name: for the checksum, and to find each layer's tensors. */
    const bnn_tensor_view **sorted = malloc((file->tensor_count + 1) * sizeof *sorted);
    if (sorted == NULL) {
        bnn_text_printf(error, "%s: out of memory while reading the model", label);
        return BNN_RUN_FAILED;
    }
    for (size_t i = 0; i < file->tensor_count; i++) sorted[i] = &file->tensors[i];
    if (file->tensor_count > 1) qsort(sorted, file->tensor_count, sizeof *sorted, by_name);

    char computed[32];
    snprintf(computed, sizeof computed, "fnv1a64:%016llx",
             (unsigned long long)checksum(graph->value, sorted, file->tensor_count));
    status = BNN_INVALID_MODEL;
    bool mismatch = !text_equals(stored->value, computed);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* A fuzzer cannot forge a checksum, so its builds compute it but read on, to reach the graph's checks. */
    mismatch = false;
#endif
    if (mismatch) {
        bnn_text_printf(error, "%s: checksum mismatch (stored ", label);
        bnn_text_quote(error, stored->value.bytes, stored->value.length);
        bnn_text_printf(error, ", computed %s): the file is corrupted", computed);
        goto done;
    }

    status = check_graph(storage, label, sorted, error);
done:
    free(sorted);
    return status;
}

int bnn_packed_model_adopt(uint8_t *bytes, size_t size, const char *label, bnn_packed_model **out, bnn_text *error) {
    *out = NULL;
    if (label == NULL) label = "<memory>";
    model_storage *storage = calloc(1, sizeof *storage);
    if (storage == NULL) {
        free(bytes);
        bnn_text_printf(error, "%s: out of memory while reading the model", label);
        return BNN_RUN_FAILED;
    }
    storage->bytes = bytes;
    const int status = parse_model(storage, size, label, error);
    if (status != BNN_OK) {
        bnn_packed_model_free(&storage->public);
        return status;
    }
    *out = &storage->public;
    return BNN_OK;
}

int bnn_packed_model_parse(const uint8_t *bytes, size_t size, const char *label, bnn_packed_model **out,
                           char **message) {
    if (message != NULL) *message = NULL;
    bnn_text error = {0};
    int status;
    if (out == NULL || (bytes == NULL && size > 0)) {
        bnn_text_printf(&error, "bnn_packed_model_parse: %s is NULL", out == NULL ? "out" : "bytes");
        status = BNN_INVALID_ARGUMENT;
        if (out != NULL) *out = NULL;
    } else {
        /* One copy, owned by the model: the tensors' data must outlive the caller's buffer. */
        uint8_t *copy = malloc(size > 0 ? size : 1);
        if (copy == NULL) {
            *out = NULL;
            bnn_text_printf(&error, "%s: out of memory for a copy of %zu bytes", label != NULL ? label : "<memory>", size);
            status = BNN_RUN_FAILED;
        } else {
            if (size > 0) memcpy(copy, bytes, size);
            status = bnn_packed_model_adopt(copy, size, label, out, &error);
        }
    }
    if (message != NULL && status != BNN_OK) *message = bnn_text_take(&error);
    bnn_text_free(&error);
    return status;
}

int bnn_read_file(const char *path, uint8_t **bytes, size_t *size, bnn_text *error) {
    *bytes = NULL;
    *size = 0;
    char reason[256];
    int descriptor;
    do descriptor = open(path, O_RDONLY | O_CLOEXEC);
    while (descriptor < 0 && errno == EINTR);
    if (descriptor < 0) {
        const int code = errno;
        if (strerror_r(code, reason, sizeof reason) != 0) snprintf(reason, sizeof reason, "error %d", code);
        bnn_text_printf(error, "%s: cannot open: %s", path, reason);
        return BNN_IO_ERROR;
    }
    struct stat info;
    if (fstat(descriptor, &info) != 0) {
        const int code = errno;
        if (strerror_r(code, reason, sizeof reason) != 0) snprintf(reason, sizeof reason, "error %d", code);
        bnn_text_printf(error, "%s: cannot read its size: %s", path, reason);
        close(descriptor);
        return BNN_IO_ERROR;
    }
    if (!S_ISREG(info.st_mode)) {
        bnn_text_printf(error, "%s: not a regular file", path);
        close(descriptor);
        return BNN_IO_ERROR;
    }
    /* The size fstat gives, plus one byte so that a file that grew meanwhile is noticed and read to its end. */
    size_t capacity = info.st_size > 0 && (uint64_t)info.st_size < SIZE_MAX / 2 ? (size_t)info.st_size + 1 : 4096;
    size_t length = 0;
    uint8_t *buffer = malloc(capacity);
    for (;;) {
        if (buffer == NULL) {
            bnn_text_printf(error, "%s: out of memory after reading %zu bytes", path, length);
            close(descriptor);
            return BNN_RUN_FAILED;
        }
        if (length == capacity) {
            uint8_t *grown = capacity < SIZE_MAX / 2 ? realloc(buffer, capacity * 2) : NULL;
            if (grown == NULL) free(buffer);
            buffer = grown;
            capacity *= 2;
            continue;
        }
        const ssize_t count = read(descriptor, buffer + length, capacity - length);
        if (count < 0) {
            if (errno == EINTR) continue;
            const int code = errno;
            if (strerror_r(code, reason, sizeof reason) != 0) snprintf(reason, sizeof reason, "error %d", code);
            bnn_text_printf(error, "%s: read failed after %zu bytes: %s", path, length, reason);
            free(buffer);
            close(descriptor);
            return BNN_IO_ERROR;
        }
        if (count == 0) break;
        length += (size_t)count;
    }
    close(descriptor);
    *bytes = buffer;
    *size = length;
    return BNN_OK;
}

int bnn_packed_model_read(const char *path, bnn_packed_model **out, char **message) {
    if (message != NULL) *message = NULL;
    bnn_text error = {0};
    int status;
    if (out != NULL) *out = NULL;
    if (path == NULL || out == NULL) {
        bnn_text_printf(&error, "bnn_packed_model_read: %s is NULL", path == NULL ? "path" : "out");
        status = BNN_INVALID_ARGUMENT;
    } else {
        uint8_t *bytes;
        size_t size;
        status = bnn_read_file(path, &bytes, &size, &error);
        if (status == BNN_OK) status = bnn_packed_model_adopt(bytes, size, path, out, &error);
    }
    if (message != NULL && status != BNN_OK) *message = bnn_text_take(&error);
    bnn_text_free(&error);
    return status;
}
