// IEEE half (fp16) and bfloat16 <-> float conversions, bit-exact, as the
// checkpoints store them. Used where weights are loaded or read.
#pragma once

#include <cstdint>
#include <cstring>

namespace mplug_owl2 {

inline float bits_to_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline std::uint32_t float_to_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// fp16 -> fp32, exact for every value (normals, subnormals, inf, nan).
inline float fp16_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
    if (exp == 0) {
        if (mant == 0) return bits_to_float(sign);  // signed zero
        // subnormal: value = mant * 2^-24
        float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// fp32 -> fp16, round to nearest even (as torch's .half()).
inline std::uint16_t float_to_fp16(float f) {
    std::uint32_t u = float_to_bits(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u >= 0x7f800000u)  // inf or nan
        return static_cast<std::uint16_t>(sign | 0x7c00u | (u > 0x7f800000u ? 0x200u : 0u));
    if (u >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
    if (u < 0x38800000u) {  // subnormal or zero in fp16
        if (u < 0x33000000u) return sign;  // below half the smallest subnormal
        const std::uint32_t exp = u >> 23;
        const std::uint32_t mant = (u & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - exp;  // 14..24
        std::uint32_t r = mant >> shift;
        const std::uint32_t rem = mant & ((1u << shift) - 1u);
        const std::uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
        return static_cast<std::uint16_t>(sign | r);
    }
    std::uint32_t r = ((u >> 13) - (112u << 10));
    const std::uint32_t rem = u & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
}

inline float bf16_to_float(std::uint16_t b) { return bits_to_float(static_cast<std::uint32_t>(b) << 16); }

// fp32 -> bf16, round to nearest even (as torch's .bfloat16()).
inline std::uint16_t float_to_bf16(float f) {
    std::uint32_t u = float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet nan
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>(u >> 16);
}

}  // namespace mplug_owl2
