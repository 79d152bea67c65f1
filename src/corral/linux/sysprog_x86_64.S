# The executor of linux/sysprog.py (x86-64, System V ABI), as its _CODE holds it:
#   as --64 -o sysprog.o sysprog_x86_64.S && objcopy -O binary -j .text sysprog.o code.bin
# tests/unit/test_sysprog.py assembles this file (when GNU as is installed) and
# compares the bytes.
#
#   long run(struct clone_args *args, size_t size, const struct program *prog)
# Parent: returns clone3's result (child PID or -errno).
# Child (own stack, shared memory until execve): runs prog's ops in order.
# program header: u64 report_fd; then ops of 10 u64 each:
#   nr, a0..a5, ctl, store, ok
#   ctl bit i (0-5): argument i is an address; the u64 there is passed.
#   ctl bit 8: a result of 0 is a failure (EOF on a pipe read).
#   store: address where the result (rax) is written, or 0.
#   ok: an errno that counts as success, or -1 for any; 0 for none.
# A failure writes {op index, errno} (2 u64) to report_fd and exits 127.
    .intel_syntax noprefix
    .text
    .globl run
run:
    mov r8, rdx
    mov eax, 435
    syscall
    test rax, rax
    jz child
    ret
child:
    mov r13, [r8]          # report fd
    lea rbx, [r8+8]        # first op
    xor r12d, r12d         # op index
next_op:
    mov r14, [rbx+56]      # ctl
    mov rdi, [rbx+8]
    test r14b, 1
    jz 1f
    mov rdi, [rdi]
1:  mov rsi, [rbx+16]
    test r14b, 2
    jz 1f
    mov rsi, [rsi]
1:  mov rdx, [rbx+24]
    test r14b, 4
    jz 1f
    mov rdx, [rdx]
1:  mov r10, [rbx+32]
    test r14b, 8
    jz 1f
    mov r10, [r10]
1:  mov r8, [rbx+40]
    test r14b, 16
    jz 1f
    mov r8, [r8]
1:  mov r9, [rbx+48]
    test r14b, 32
    jz 1f
    mov r9, [r9]
1:  mov rax, [rbx]
    syscall
    mov rdx, [rbx+64]
    test rdx, rdx
    jz 1f
    mov [rdx], rax
1:  cmp rax, -4095
    jae failed             # -4095..-1 as unsigned
    test rax, rax
    jnz advance
    test r14d, 256
    jz advance
    jmp report             # a 0 that is a failure: errno 0
failed:
    neg rax
    mov rdx, [rbx+72]
    cmp rdx, -1
    je advance
    cmp rax, rdx
    je advance
report:
    sub rsp, 16
    mov [rsp], r12
    mov [rsp+8], rax
    mov rdi, r13
    mov rsi, rsp
    mov edx, 16
    mov eax, 1
    syscall
    mov edi, 127
    mov eax, 231
    syscall
advance:
    add rbx, 80
    inc r12
    jmp next_op
