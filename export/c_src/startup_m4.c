/* Minimal Cortex-M4 start-up for QEMU's mps2-an386 board: vector table, then newlib's _start
 * (rdimon: semihosting for file I/O, .bss cleared, main called). Used by `make m4` only. */
#include <stdint.h>

extern void _start(void);
extern uint32_t __stack_top;

void nca_reset(void);
void nca_fault(void);

void nca_reset(void) { _start(); for (;;) {} }
void nca_fault(void) { for (;;) {} }

__attribute__((section(".vectors"), used))
void (*const nca_vectors[16])(void) = {
    (void (*)(void))(&__stack_top), nca_reset, nca_fault, nca_fault, nca_fault, nca_fault, nca_fault, 0,
    0, 0, 0, nca_fault, nca_fault, 0, nca_fault, nca_fault,
};
