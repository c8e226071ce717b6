import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

exit(Benchmark.main(Array(CommandLine.arguments.dropFirst())))
