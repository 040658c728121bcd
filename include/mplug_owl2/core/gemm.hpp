// Matrix products through BLAS (OpenBLAS's cblas), row-major, on xtensor
// storage: no copies of the operands. Large float products on AVX-512 CPUs
// go to kernels/sgemm.hpp instead (same result up to summation order).
#pragma once

#include <cblas.h>

#include <type_traits>

#include "../kernels/sgemm.hpp"
#include "parallel.hpp"
#include "tensor.hpp"

namespace mplug_owl2 {

enum class Trans { No, Yes };

// C[M,N] = alpha · op(A) · op(B) + beta · C, all row-major with leading
// dimensions lda, ldb, ldc (elements between consecutive rows).
template <class T>
void gemm(Trans ta, Trans tb, std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
          std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                  "gemm: T must be float or double");
    if (M == 0 || N == 0) return;
    if constexpr (std::is_same<T, float>::value) {
        if (kernels::sgemm_is_faster(M, N, K))
            return kernels::sgemm(ta == Trans::Yes, tb == Trans::Yes, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                  &thread_pool());
    }
    const auto cta = ta == Trans::Yes ? CblasTrans : CblasNoTrans;
    const auto ctb = tb == Trans::Yes ? CblasTrans : CblasNoTrans;
    const auto m = static_cast<blasint>(M), n = static_cast<blasint>(N), k = static_cast<blasint>(K);
    if constexpr (std::is_same<T, float>::value)
        cblas_sgemm(CblasRowMajor, cta, ctb, m, n, k, alpha, A, static_cast<blasint>(lda), B,
                    static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
    else
        cblas_dgemm(CblasRowMajor, cta, ctb, m, n, k, alpha, A, static_cast<blasint>(lda), B,
                    static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// x · Wᵀ for x [M, K] and W [N, K] (the checkpoint's [out, in] layout).
template <class T>
Matrix<T> matmul_nt(const Matrix<T>& x, const Matrix<T>& w) {
    if (x.shape(1) != w.shape(1))
        fail("matmul_nt: x has ", x.shape(1), " columns but W is ", shape_str({w.shape(0), w.shape(1)}));
    Matrix<T> y = Matrix<T>::from_shape({x.shape(0), w.shape(0)});
    gemm<T>(Trans::No, Trans::Yes, x.shape(0), w.shape(0), x.shape(1), T(1), x.data(), x.shape(1),
            w.data(), w.shape(1), T(0), y.data(), y.shape(1));
    return y;
}

// a · b for a [M, K] and b [K, N].
template <class T>
Matrix<T> matmul(const Matrix<T>& a, const Matrix<T>& b) {
    if (a.shape(1) != b.shape(0))
        fail("matmul: shapes ", shape_str({a.shape(0), a.shape(1)}), " and ",
             shape_str({b.shape(0), b.shape(1)}), " do not chain");
    Matrix<T> y = Matrix<T>::from_shape({a.shape(0), b.shape(1)});
    gemm<T>(Trans::No, Trans::No, a.shape(0), b.shape(1), a.shape(1), T(1), a.data(), a.shape(1),
            b.data(), b.shape(1), T(0), y.data(), y.shape(1));
    return y;
}

}  // namespace mplug_owl2
