import CSystemIO

/// CRC-32C (Castagnoli), with the CPU instruction where there is one and slicing-by-8 otherwise,
/// with LevelDB's masking for CRCs stored next to the data they cover (a CRC of bytes that
/// themselves contain CRCs is otherwise weak).
public enum CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][index] = crc
        }
        for index in 0..<256 {
            for slice in 1..<8 {
                let previous = tables[slice - 1][index]
                tables[slice][index] = (previous >> 8) ^ tables[0][Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// Whether the CPU's CRC32 instruction is used (SSE 4.2 on x86-64), else slicing-by-8 tables.
    public static let usesInstruction = csystemio_has_crc32c_instruction() == 1

    /// The CRC-32C of `bytes`, continuing from `crc` (0 to start).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        if usesInstruction, let base = bytes.baseAddress { return csystemio_crc32c(crc, base, bytes.count) }
        return checksumByTables(bytes, continuing: crc)
    }

    /// The table-driven CRC-32C (slicing-by-8), for CPUs without the instruction and for checking it.
    public static func checksumByTables(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var value = ~crc
        var index = 0
        let count = bytes.count
        tables.withUnsafeBufferPointer { all in
            let t0 = all[0], t1 = all[1], t2 = all[2], t3 = all[3]
            let t4 = all[4], t5 = all[5], t6 = all[6], t7 = all[7]
            t0.withUnsafeBufferPointer { t0 in
                t1.withUnsafeBufferPointer { t1 in
                    t2.withUnsafeBufferPointer { t2 in
                        t3.withUnsafeBufferPointer { t3 in
                            t4.withUnsafeBufferPointer { t4 in
                                t5.withUnsafeBufferPointer { t5 in
                                    t6.withUnsafeBufferPointer { t6 in
                                        t7.withUnsafeBufferPointer { t7 in
                                            while count - index >= 8 {
                                                let low = value ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian
                                                let high = bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self).littleEndian
                                                value =
                                                    t7[Int(low & 0xFF)] ^ t6[Int(low >> 8 & 0xFF)] ^ t5[Int(low >> 16 & 0xFF)]
                                                    ^ t4[Int(low >> 24)] ^ t3[Int(high & 0xFF)] ^ t2[Int(high >> 8 & 0xFF)]
                                                    ^ t1[Int(high >> 16 & 0xFF)] ^ t0[Int(high >> 24)]
                                                index += 8
                                            }
                                            while index < count {
                                                value = t0[Int((value ^ UInt32(bytes[index])) & 0xFF)] ^ (value >> 8)
                                                index += 1
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return ~value
    }

    /// The CRC-32C of a byte array.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    private static let maskDelta: UInt32 = 0xA282_EAD8

    /// The masked form stored on disk.
    public static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ maskDelta }

    /// Undoes `mask`.
    public static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- maskDelta
        return (rotated >> 17) | (rotated << 15)
    }
}
