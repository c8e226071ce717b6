/// Cuts bytes read from a source into lines, with a bound on line length so one runaway line can
/// never grow memory: a line longer than the bound is reported and skipped, even when its end is
/// not read yet (`discarding` carries that across reads).
enum LineSplitter {
    /// One piece of the input.
    enum Piece: Equatable {
        /// A complete line without its `\n` (and without a `\r` before it); may be empty.
        case line(Range<Int>)
        /// A line over the limit: the range covers what of it is in this buffer.
        case tooLong(Range<Int>)
    }

    /// The pieces of `bytes`, and how many bytes they consumed (the rest is an unfinished line,
    /// to be read again with more bytes behind it).
    struct Split: Equatable {
        var pieces: [Piece]
        var consumed: Int
        /// The input ends inside a line too long to keep: skip up to the next `\n`.
        var discarding: Bool
        /// Newlines passed (every line, including blank, too long and the end of a discarded one).
        var newlines: Int
    }

    /// Splits `bytes`. `discarding`: the input starts inside a line too long to keep.
    /// `atEnd`: nothing will ever follow (a rotated file, a command's finished output), so an
    /// unfinished last line is a line.
    static func split(_ bytes: [UInt8], discarding: Bool, maxLineBytes: Int, atEnd: Bool) -> Split {
        var pieces: [Piece] = []
        var start = 0
        var skipping = discarding
        var newlines = 0
        while let newline = bytes[start...].firstIndex(of: 0x0A) {
            newlines += 1
            if skipping {
                skipping = false
            } else {
                var end = newline
                if end > start && bytes[end - 1] == 0x0D { end -= 1 }
                pieces.append(end - start > maxLineBytes ? .tooLong(start..<end) : .line(start..<end))
            }
            start = newline + 1
        }
        if skipping { return Split(pieces: pieces, consumed: bytes.count, discarding: !atEnd, newlines: newlines) }
        let rest = bytes.count - start
        // One byte more may still be a line at the limit followed by its CR LF.
        let mayEndHere = rest == maxLineBytes + 1 && bytes.last == 0x0D && !atEnd
        if rest > maxLineBytes && !mayEndHere {
            pieces.append(.tooLong(start..<bytes.count))
            return Split(pieces: pieces, consumed: bytes.count, discarding: !atEnd, newlines: newlines)
        }
        if atEnd && rest > 0 {
            var end = bytes.count
            if bytes[end - 1] == 0x0D { end -= 1 }
            pieces.append(.line(start..<end))
            return Split(pieces: pieces, consumed: bytes.count, discarding: false, newlines: newlines)
        }
        return Split(pieces: pieces, consumed: start, discarding: false, newlines: newlines)
    }
}
