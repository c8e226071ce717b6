#if canImport(Glibc)
    import Glibc
#endif

exit(MeterCtl.run(Array(CommandLine.arguments.dropFirst())))
