#include "zerodet/codec/decode.h"

#include <png.h>
// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "exif.h"
#include "jpeg_markers.h"
#include "zerodet/core/file.h"

namespace zerodet {
namespace {

// OpenCV writes its own log lines to stderr; zerodet reports every failure as a Status (one
// line per error), so OpenCV's log stays off.
[[maybe_unused]] const bool kOpenCvLogSilenced = [] {
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  return true;
}();

std::string Quote(std::string_view source_name) {
  return source_name.empty() ? std::string("<memory>") : std::string(source_name);
}

uint32_t BigEndian32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
uint32_t LittleEndian32(const uint8_t* p) {
  return uint32_t{p[3]} << 24 | uint32_t{p[2]} << 16 | uint32_t{p[1]} << 8 | p[0];
}

Status CheckPixelLimit(const ImageInfo& info, std::string_view source_name,
                       const DecodeOptions& options) {
  const uint64_t pixels = uint64_t(info.width) * uint64_t(info.height);
  if (pixels > options.max_pixels) {
    return ResourceExhaustedError(fmt::format(
        "{}: image is {}x{} ({} pixels), over the limit of {} pixels (DecodeOptions::max_pixels)",
        Quote(source_name), info.width, info.height, pixels, options.max_pixels));
  }
  return Status::Ok();
}

// ---- JPEG (libjpeg-turbo's libjpeg API) ----------------------------------------------------
//
// The libjpeg API rather than TurboJPEG: it tells each warning by its code (a truncated or
// corrupt scan is a warning to libjpeg, which then fills the rest with gray) and lets a progress
// monitor stop a decode that runs through too many scans. Everything libjpeg's error longjmp can
// cross lives in a heap JpegJob; the functions that call setjmp hold no objects with destructors.

struct JpegJob {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr errors{};
  jpeg_progress_mgr progress{};
  std::jmp_buf jump{};
  bool created = false;
  int max_scans = 0;
  // Why the decode stopped, when it did.
  enum class Failure { kNone, kCorrupt, kTruncated, kTooManyScans } failure = Failure::kNone;
  std::string message;
  std::string benign_warning;  // the last warning that did not stop the decode

  ~JpegJob() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

JpegJob* JobOf(j_common_ptr cinfo) {
  return static_cast<JpegJob*>(cinfo->client_data);
}

std::string FormatJpegMessage(j_common_ptr cinfo) {
  char buffer[JMSG_LENGTH_MAX] = {};
  (*cinfo->err->format_message)(cinfo, buffer);
  return buffer;
}

[[noreturn]] void JpegFail(j_common_ptr cinfo, JpegJob::Failure failure) {
  JpegJob* job = JobOf(cinfo);
  job->failure = failure;
  if (job->message.empty()) job->message = FormatJpegMessage(cinfo);
  std::longjmp(job->jump, 1);
}

void JpegErrorExit(j_common_ptr cinfo) {
  JpegFail(cinfo, JpegJob::Failure::kCorrupt);
}

// libjpeg reports damaged data as warnings and goes on with made-up pixels. Only warnings about
// metadata leave the pixels intact; every other one fails the decode.
void JpegEmitMessage(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  switch (cinfo->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA:  // stray bytes between markers, common in camera files
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC:
      JobOf(cinfo)->benign_warning = FormatJpegMessage(cinfo);
      return;
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
      JpegFail(cinfo, JpegJob::Failure::kTruncated);
    default:
      JpegFail(cinfo, JpegJob::Failure::kCorrupt);
  }
}

void JpegOutputMessage(j_common_ptr) {}  // libjpeg's default prints to stderr

void JpegProgress(j_common_ptr cinfo) {
  auto* decompress = reinterpret_cast<j_decompress_ptr>(cinfo);
  JpegJob* job = JobOf(cinfo);
  if (decompress->input_scan_number > job->max_scans) {
    job->message = fmt::format("more than {} scans", job->max_scans);
    JpegFail(cinfo, JpegJob::Failure::kTooManyScans);
  }
}

std::unique_ptr<JpegJob> NewJpegJob(int max_scans) {
  auto job = std::make_unique<JpegJob>();
  job->cinfo.err = jpeg_std_error(&job->errors);
  job->errors.error_exit = JpegErrorExit;
  job->errors.emit_message = JpegEmitMessage;
  job->errors.output_message = JpegOutputMessage;
  job->cinfo.client_data = job.get();
  job->progress.progress_monitor = JpegProgress;
  job->max_scans = max_scans;
  return job;
}

bool RunJpegReadHeader(JpegJob* job, std::span<const uint8_t> bytes) {
  if (setjmp(job->jump)) return false;
  jpeg_create_decompress(&job->cinfo);
  job->created = true;
  job->cinfo.progress = &job->progress;
  jpeg_mem_src(&job->cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&job->cinfo, TRUE);
  return true;
}

// Sets the output color space and scale and computes output_width/height.
bool RunJpegPrepareOutput(JpegJob* job, J_COLOR_SPACE color_space, unsigned scale_denom) {
  if (setjmp(job->jump)) return false;
  job->cinfo.out_color_space = color_space;
  job->cinfo.scale_num = 1;
  job->cinfo.scale_denom = scale_denom;
  jpeg_calc_output_dimensions(&job->cinfo);
  return true;
}

bool RunJpegDecompress(JpegJob* job, uint8_t* target, size_t pitch) {
  if (setjmp(job->jump)) return false;
  jpeg_start_decompress(&job->cinfo);
  while (job->cinfo.output_scanline < job->cinfo.output_height) {
    JSAMPROW row = target + size_t{job->cinfo.output_scanline} * pitch;
    jpeg_read_scanlines(&job->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&job->cinfo);
  return true;
}

Status JpegFailureStatus(const JpegJob& job, std::string_view source_name, bool in_header) {
  switch (job.failure) {
    case JpegJob::Failure::kTruncated:
      return CorruptDataError(fmt::format("{}: truncated JPEG{} ({})", Quote(source_name),
                                          in_header ? " (the data ends inside its headers)" : "",
                                          job.message));
    case JpegJob::Failure::kTooManyScans:
      return ResourceExhaustedError(
          fmt::format("{}: JPEG has {}, over the limit (DecodeOptions::max_jpeg_scans)",
                      Quote(source_name), job.message));
    default:
      return CorruptDataError(fmt::format("{}: corrupt JPEG{} ({})", Quote(source_name),
                                          in_header ? " header" : "", job.message));
  }
}

// The smallest DCT scale factor (1/2, 1/4, 1/8) that keeps the image at least as large as the
// letterbox would resize it to for a target_side x target_side input; 1 when none does.
unsigned ChooseJpegScaleDenom(int width, int height, int target_side) {
  unsigned chosen = 1;
  if (target_side <= 0) return chosen;
  const double letterbox_ratio =
      std::min(double(target_side) / width, double(target_side) / height);
  for (unsigned denom : {2u, 4u, 8u}) {
    if (1.0 / denom >= letterbox_ratio) chosen = denom;
  }
  return chosen;
}

// Adobe CMYK JPEGs store inverted values; this is the conversion cv::imread uses.
void InvertedCmykToRgb(const uint8_t* cmyk, size_t pixels, uint8_t* rgb) {
  for (size_t i = 0; i < pixels; ++i, cmyk += 4, rgb += 3) {
    const int k = cmyk[3];
    rgb[0] = static_cast<uint8_t>(k - ((255 - cmyk[0]) * k >> 8));
    rgb[1] = static_cast<uint8_t>(k - ((255 - cmyk[1]) * k >> 8));
    rgb[2] = static_cast<uint8_t>(k - ((255 - cmyk[2]) * k >> 8));
  }
}

// Applies an EXIF orientation (2..8) the way cv::imread does.
Image ApplyOrientation(Image image, int orientation) {
  if (orientation <= 1 || orientation > 8) return image;
  cv::Mat src(image.height(), image.width(), CV_8UC3, image.data(), image.stride());
  if (orientation <= 4) {
    const int flip_code = orientation == 2 ? 1 : orientation == 3 ? -1 : 0;
    cv::flip(src, src, flip_code);
    return image;
  }
  Image rotated(image.height(), image.width(), PixelFormat::kRGB8);
  cv::Mat dst(rotated.height(), rotated.width(), CV_8UC3, rotated.data(), rotated.stride());
  cv::transpose(src, dst);
  if (orientation != 5) cv::flip(dst, dst, orientation == 6 ? 1 : orientation == 7 ? -1 : 0);
  return rotated;
}

// Refuses streams with more scans than the limit before libjpeg decodes any of them.
Status CheckJpegScanCount(std::span<const uint8_t> bytes, std::string_view source_name,
                          const DecodeOptions& options) {
  const int scans = codec_internal::CountJpegScans(bytes, options.max_jpeg_scans);
  if (scans > options.max_jpeg_scans) {
    return ResourceExhaustedError(fmt::format(
        "{}: JPEG has more than {} scans (a progressive-JPEG decode bomb?), over the limit of "
        "DecodeOptions::max_jpeg_scans",
        Quote(source_name), options.max_jpeg_scans));
  }
  return Status::Ok();
}

Result<ImageInfo> ReadJpegInfo(std::span<const uint8_t> bytes, std::string_view source_name) {
  std::unique_ptr<JpegJob> job = NewJpegJob(std::numeric_limits<int>::max());
  if (!RunJpegReadHeader(job.get(), bytes)) {
    return JpegFailureStatus(*job, source_name, /*in_header=*/true);
  }
  return ImageInfo{ImageFormat::kJpeg, static_cast<int>(job->cinfo.image_width),
                   static_cast<int>(job->cinfo.image_height)};
}

Result<DecodedImage> DecodeJpeg(std::span<const uint8_t> bytes, std::string_view source_name,
                                const DecodeOptions& options) {
  ZD_RETURN_IF_ERROR(CheckJpegScanCount(bytes, source_name, options));
  std::unique_ptr<JpegJob> job = NewJpegJob(options.max_jpeg_scans);
  if (!RunJpegReadHeader(job.get(), bytes)) {
    return JpegFailureStatus(*job, source_name, /*in_header=*/true);
  }
  const ImageInfo info{ImageFormat::kJpeg, static_cast<int>(job->cinfo.image_width),
                       static_cast<int>(job->cinfo.image_height)};
  ZD_RETURN_IF_ERROR(CheckPixelLimit(info, source_name, options));
  // libjpeg cannot convert CMYK to RGB itself: decode CMYK, then convert.
  const bool cmyk =
      job->cinfo.jpeg_color_space == JCS_CMYK || job->cinfo.jpeg_color_space == JCS_YCCK;
  const unsigned denom = ChooseJpegScaleDenom(info.width, info.height, options.jpeg_scale_min_side);
  if (!RunJpegPrepareOutput(job.get(), cmyk ? JCS_CMYK : JCS_RGB, denom)) {
    return JpegFailureStatus(*job, source_name, /*in_header=*/false);
  }
  const int width = static_cast<int>(job->cinfo.output_width);
  const int height = static_cast<int>(job->cinfo.output_height);
  Image image(width, height, PixelFormat::kRGB8);
  std::vector<uint8_t> cmyk_pixels;
  uint8_t* target = image.data();
  size_t pitch = image.stride();
  if (cmyk) {
    cmyk_pixels.resize(size_t(width) * size_t(height) * 4);
    target = cmyk_pixels.data();
    pitch = size_t(width) * 4;
  }
  if (!RunJpegDecompress(job.get(), target, pitch)) {
    return JpegFailureStatus(*job, source_name, /*in_header=*/false);
  }
  if (!job->benign_warning.empty()) {
    spdlog::debug("{}: JPEG warning: {}", Quote(source_name), job->benign_warning);
  }
  if (cmyk) InvertedCmykToRgb(cmyk_pixels.data(), size_t(width) * size_t(height), image.data());

  const int orientation = codec_internal::ReadJpegExifOrientation(bytes);
  const bool swaps_axes = orientation >= 5;
  DecodedImage decoded;
  decoded.image = ApplyOrientation(std::move(image), orientation);
  decoded.source_width = swaps_axes ? info.height : info.width;
  decoded.source_height = swaps_axes ? info.width : info.height;
  return decoded;
}

// ---- PNG (libpng) --------------------------------------------------------------------------

// Everything libpng's error longjmp can cross lives here, on the heap: the decode function
// between setjmp and longjmp holds no automatic objects with destructors.
struct PngJob {
  std::span<const uint8_t> bytes;
  size_t read_pos = 0;
  uint64_t max_pixels = 0;
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::string error;
  bool too_large = false;
  int width = 0;
  int height = 0;
  Image image;
  std::vector<png_bytep> rows;

  ~PngJob() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }

  void AllocateImage() {
    image = Image(width, height, PixelFormat::kRGB8);
    rows.resize(size_t(height));
    for (int y = 0; y < height; ++y) rows[size_t(y)] = image.data() + size_t(y) * image.stride();
  }
};

void PngError(png_structp png, png_const_charp message) {
  static_cast<PngJob*>(png_get_error_ptr(png))->error = message;
  png_longjmp(png, 1);
}
void PngWarning(png_structp, png_const_charp) {}

void PngRead(png_structp png, png_bytep out, size_t length) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (length > job->bytes.size() - job->read_pos) png_error(png, "unexpected end of data");
  std::memcpy(out, job->bytes.data() + job->read_pos, length);
  job->read_pos += length;
}

// Returns false with job->error or job->too_large set on failure. The transforms are those of
// cv::imread(IMREAD_COLOR): 16 -> 8 bit by dropping the low byte, alpha dropped (not blended),
// palette and gray expanded to RGB.
bool RunPngDecode(PngJob* job) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  png_set_read_fn(job->png, job, PngRead);
  png_read_info(job->png, job->info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(job->png, job->info, &width, &height, &bit_depth, &color_type, nullptr, nullptr,
               nullptr);
  job->width = static_cast<int>(width);
  job->height = static_cast<int>(height);
  if (uint64_t{width} * height > job->max_pixels) {
    job->too_large = true;
    return false;
  }
  if (bit_depth > 8) png_set_strip_16(job->png);
  png_set_strip_alpha(job->png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(job->png);
  if ((color_type & PNG_COLOR_MASK_COLOR) == 0) {
    if (bit_depth < 8) png_set_expand_gray_1_2_4_to_8(job->png);
    png_set_gray_to_rgb(job->png);
  }
  png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  if (png_get_rowbytes(job->png, job->info) != size_t{width} * 3) {
    job->error = "unsupported pixel layout";
    return false;
  }
  job->AllocateImage();
  png_read_image(job->png, job->rows.data());
  png_read_end(job->png, nullptr);
  return true;
}

Result<DecodedImage> DecodePng(std::span<const uint8_t> bytes, std::string_view source_name,
                               const DecodeOptions& options) {
  auto job = std::make_unique<PngJob>();
  job->bytes = bytes;
  job->max_pixels = options.max_pixels;
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job.get(), PngError, PngWarning);
  if (job->png) job->info = png_create_info_struct(job->png);
  if (!job->png || !job->info) return InternalError("libpng: out of memory");
  if (!RunPngDecode(job.get())) {
    if (job->too_large) {
      return CheckPixelLimit(ImageInfo{ImageFormat::kPng, job->width, job->height}, source_name,
                             options);
    }
    return CorruptDataError(
        fmt::format("{}: corrupt or truncated PNG ({})", Quote(source_name), job->error));
  }
  DecodedImage decoded;
  decoded.source_width = job->width;
  decoded.source_height = job->height;
  decoded.image = std::move(job->image);
  return decoded;
}

// ---- BMP (OpenCV, after our own header check) ----------------------------------------------

Result<ImageInfo> ReadBmpInfo(std::span<const uint8_t> bytes, std::string_view source_name) {
  // BITMAPFILEHEADER (14 bytes), then the DIB header whose first field is its size.
  if (bytes.size() < 26) {
    return CorruptDataError(fmt::format("{}: truncated BMP header", Quote(source_name)));
  }
  const uint32_t dib_size = LittleEndian32(bytes.data() + 14);
  int64_t width = 0, height = 0;
  if (dib_size == 12) {  // BITMAPCOREHEADER: 16-bit sizes
    width = bytes[18] | bytes[19] << 8;
    height = bytes[20] | bytes[21] << 8;
  } else if (dib_size >= 40) {
    width = static_cast<int32_t>(LittleEndian32(bytes.data() + 18));
    height = static_cast<int32_t>(LittleEndian32(bytes.data() + 22));
    height = height < 0 ? -height : height;  // negative height: rows stored top-down
  } else {
    return CorruptDataError(
        fmt::format("{}: unknown BMP header size {}", Quote(source_name), dib_size));
  }
  if (width <= 0 || height <= 0 || width > INT32_MAX || height > INT32_MAX) {
    return CorruptDataError(
        fmt::format("{}: invalid BMP size {}x{}", Quote(source_name), width, height));
  }
  // OpenCV decodes a cut-off uncompressed BMP without complaint (missing rows come out as
  // garbage), so the pixel array's extent is checked against the data here.
  if (dib_size >= 40) {
    const uint32_t pixel_offset = LittleEndian32(bytes.data() + 10);
    const uint32_t bits_per_pixel = bytes.size() >= 30 ? uint32_t(bytes[28] | bytes[29] << 8) : 0;
    const uint32_t compression = bytes.size() >= 34 ? LittleEndian32(bytes.data() + 30) : 0;
    constexpr uint32_t kBiRgb = 0, kBiBitfields = 3;
    if (compression == kBiRgb || compression == kBiBitfields) {
      const uint64_t row_bytes = (uint64_t(width) * bits_per_pixel + 31) / 32 * 4;
      const uint64_t needed = uint64_t{pixel_offset} + row_bytes * uint64_t(height);
      if (needed > bytes.size()) {
        return CorruptDataError(fmt::format("{}: truncated BMP ({} bytes, pixel data needs {})",
                                            Quote(source_name), bytes.size(), needed));
      }
    }
  }
  return ImageInfo{ImageFormat::kBmp, static_cast<int>(width), static_cast<int>(height)};
}

Result<DecodedImage> DecodeBmp(std::span<const uint8_t> bytes, std::string_view source_name) {
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<uint8_t*>(bytes.data()));
  cv::Mat bgr = cv::imdecode(encoded, cv::IMREAD_COLOR);
  if (bgr.empty()) {
    return CorruptDataError(fmt::format("{}: corrupt or truncated BMP", Quote(source_name)));
  }
  DecodedImage decoded;
  decoded.image = Image(bgr.cols, bgr.rows, PixelFormat::kRGB8);
  cv::Mat rgb(bgr.rows, bgr.cols, CV_8UC3, decoded.image.data(), decoded.image.stride());
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  decoded.source_width = bgr.cols;
  decoded.source_height = bgr.rows;
  return decoded;
}

Result<ImageInfo> ReadPngInfo(std::span<const uint8_t> bytes, std::string_view source_name) {
  // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4).
  if (bytes.size() < 24 || std::memcmp(bytes.data() + 12, "IHDR", 4) != 0) {
    return CorruptDataError(fmt::format("{}: truncated PNG header", Quote(source_name)));
  }
  const uint32_t width = BigEndian32(bytes.data() + 16);
  const uint32_t height = BigEndian32(bytes.data() + 20);
  if (width == 0 || height == 0 || width > INT32_MAX || height > INT32_MAX) {
    return CorruptDataError(
        fmt::format("{}: invalid PNG size {}x{}", Quote(source_name), width, height));
  }
  return ImageInfo{ImageFormat::kPng, static_cast<int>(width), static_cast<int>(height)};
}

}  // namespace

ImageFormat DetectImageFormat(std::span<const uint8_t> bytes) {
  static constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    return ImageFormat::kJpeg;
  }
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0) {
    return ImageFormat::kPng;
  }
  if (bytes.size() >= 2 && bytes[0] == 'B' && bytes[1] == 'M') return ImageFormat::kBmp;
  return ImageFormat::kUnknown;
}

bool HasImageFileExtension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

Result<ImageInfo> ReadImageInfo(std::span<const uint8_t> bytes, std::string_view source_name) {
  if (bytes.empty()) {
    return CorruptDataError(fmt::format("{}: empty file, not an image", Quote(source_name)));
  }
  switch (DetectImageFormat(bytes)) {
    case ImageFormat::kJpeg:
      return ReadJpegInfo(bytes, source_name);
    case ImageFormat::kPng:
      return ReadPngInfo(bytes, source_name);
    case ImageFormat::kBmp:
      return ReadBmpInfo(bytes, source_name);
    case ImageFormat::kUnknown:
      break;
  }
  return CorruptDataError(
      fmt::format("{}: not a JPEG, PNG or BMP image (unrecognized signature)", Quote(source_name)));
}

Result<DecodedImage> DecodeImage(std::span<const uint8_t> bytes, std::string_view source_name,
                                 const DecodeOptions& options) {
  // The header decides the format and is checked against the pixel limit before any pixel
  // buffer exists.
  ZD_ASSIGN_OR_RETURN(ImageInfo info, ReadImageInfo(bytes, source_name));
  ZD_RETURN_IF_ERROR(CheckPixelLimit(info, source_name, options));
  switch (info.format) {
    case ImageFormat::kJpeg:
      return DecodeJpeg(bytes, source_name, options);
    case ImageFormat::kPng:
      return DecodePng(bytes, source_name, options);
    case ImageFormat::kBmp:
      return DecodeBmp(bytes, source_name);
    case ImageFormat::kUnknown:
      break;
  }
  return InternalError("unreachable image format");
}

Result<DecodedImage> DecodeImageFile(const std::filesystem::path& path,
                                     const DecodeOptions& options) {
  ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(path));
  return DecodeImage(bytes, path.string(), options);
}

}  // namespace zerodet
