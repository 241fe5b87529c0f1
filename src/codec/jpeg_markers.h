// A walk over the marker structure of a JPEG stream (internal to the codec module), used to
// bound decode work before libjpeg sees the data.
//
// A progressive JPEG may repeat scans without limit, and libjpeg processes every scan over the
// whole coefficient buffer: a 442 KB file with 2000 copies of its last scan takes over a minute
// to decode. Counting the scans first is linear in the file size and lets the decoder refuse
// such a file at once. Reads only within `jpeg`; any input is safe (this is a fuzzed parser).
#pragma once

#include <cstdint>
#include <span>

namespace zerodet::codec_internal {

// The number of start-of-scan (SOS) markers in `jpeg`, counting no further than `stop_after`
// (the result is then stop_after + 1). Entropy-coded data is skipped as the standard lays it
// out (0xFF is stuffed as FF 00; RST markers sit inside scans). A stream that ends early or
// holds garbage between markers is counted as far as it goes: the decoder reports its errors.
int CountJpegScans(std::span<const uint8_t> jpeg, int stop_after);

}  // namespace zerodet::codec_internal
