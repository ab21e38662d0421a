# Build-time check: the guest image must not contain instructions that kill a
# guest on kvm_pvm (ring-0 emulator gaps: int n, int3, the XSAVE family,
# cmpxchg16b, syscall) or that it may not know (endbr64), nor SSE/AVX
# register use (the guest never enables them).
#
#   cmake -DOBJDUMP=... -DELF=... -DSTAMP=... -P check_insns.cmake
#
# .boot32 holds 32-bit code and is disassembled as such; .trampoline mixes
# 16/32/64-bit code and is left out (hand-written, a few dozen instructions).
foreach(spec "x86-64:.boot64" "x86-64:.text" "i386:.boot32")
  string(REPLACE ":" ";" parts "${spec}")
  list(GET parts 0 mode)
  list(GET parts 1 section)
  execute_process(
    COMMAND ${OBJDUMP} -d --no-show-raw-insn -M ${mode} -j ${section} ${ELF}
    OUTPUT_VARIABLE listing RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "objdump failed on ${ELF} ${section}: ${err}")
  endif()
  string(REPLACE "\n" ";" lines "${listing}")
  foreach(line IN LISTS lines)
    if(line MATCHES "\t(lock )?(int3|int|into|icebp|int1|xsave[a-z0-9]*|xrstor[a-z0-9]*|cmpxchg16b|endbr64|endbr32|syscall|sysenter|sysret[a-z]*)( |$)"
       OR line MATCHES "%[xyz]mm[0-9]")
      message(FATAL_ERROR "forbidden instruction in ${ELF} (${section}):\n${line}")
    endif()
  endforeach()
endforeach()
file(WRITE ${STAMP} "ok\n")
