/*
 * TEST-ONLY shim for running Rust programs under Wine 8.0. Never shipped.
 *
 * Rust's std (1.78 and later) draws its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10 and later have and Wine 8.0 (Debian
 * 12's wine64) does not: Wine 8.0 has no bcryptprimitives.dll at all, and a
 * Rust program does not even start there (status c0000135, "Library
 * bcryptprimitives.dll ... not found"). This DLL, named bcryptprimitives.dll
 * and put beside the .exe only by scripts/windows-smoke, exports ProcessPrng
 * over RtlGenRandom (advapi32's SystemFunction036), which Wine does
 * implement. See docs/windows.md.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll processprng.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

/* ProcessPrng(PBYTE, SIZE_T): fills the buffer; Windows documents that it always returns TRUE. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
