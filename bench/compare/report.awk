# The comparison's tables, from the figures scripts/bench-compare gathered:
#   awk -f report.awk FIGURES                          the comparison: ours, SQLite, PostgreSQL
#   awk -v tables=keyed -f report.awk FIGURES          the same beside the SQL sides' keyed tables
#                                                       (sides sqlite-keyed, postgres-keyed; the
#                                                       workloads without them left out)
#   awk -v part=reference -f report.awk FIGURES REFERENCE   our SQL clients beside the reference's
# FIGURES holds one line each:
#   title WORKLOAD TEXT...                              the workload's name, in table order
#   WORKLOAD SIDE ROUND RATE P50 P99 SECONDS EVENTS     SIDE: ours, sqlite, postgres, sqlite-keyed
#                                                       or postgres-keyed; P50, P99
#                                                       in seconds or "-" (the aggregation has none)
# REFERENCE is what the reference clients' run-reference.sh printed, each round's lines after a
# line "round N": "sqlite mode=... clients=C batch=B ... events_per_s=R lat_p50_ms=P ...".
# With several rounds a cell is the median of the rounds and [their range], and a ratio is the
# median of the ratios of each round (the two figures of a ratio are measured minutes apart).
# Exits 1 when a side has no figure for a workload.
function commas(value,    text, grouped) {
    text = sprintf("%.0f", value)
    grouped = ""
    while (length(text) > 3 && substr(text, length(text) - 3, 1) ~ /[0-9]/) {
        grouped = "," substr(text, length(text) - 2) grouped
        text = substr(text, 1, length(text) - 3)
    }
    return text grouped
}
function milliseconds(seconds) { return sprintf("%.3f", seconds * 1000) }
function times(value) { return sprintf("%.2f", value) }
# Sorts list[1..count] in place (a handful of rounds: insertion sort).
function order_list(list, count,    i, j, value) {
    for (i = 2; i <= count; i++) {
        value = list[i]
        for (j = i - 1; j >= 1 && list[j] > value; j--) list[j + 1] = list[j]
        list[j + 1] = value
    }
}
function median(list, count) {
    return count % 2 ? list[(count + 1) / 2] : (list[count / 2] + list[count / 2 + 1]) / 2
}
# One cell from list[1..count] (already in any order), formatted by `style`, with `unit` after.
function summary(list, count, style, unit,    text) {
    if (count == 0) return ""
    order_list(list, count)
    text = format(median(list, count), style)
    if (count > 1) text = text " [" format(list[1], style) "-" format(list[count], style) "]"
    return text unit
}
function format(value, style) {
    return style == "rate" ? commas(value) : style == "ms" ? milliseconds(value) : times(value)
}
# Gathers figure `field` ("rate", "p50", ...) of `key` over the rounds into `list`; returns the count.
function gather(list, values, key,    r, count) {
    split("", list)
    count = 0
    for (r = 1; r <= rounds; r++) if ((key, r) in values) list[++count] = values[key, r]
    return count
}
# The rounds' ratios values_a[key_a, r] / values_b[key_b, r] into `list`; returns the count.
function ratios(list, values_a, key_a, values_b, key_b,    r, count) {
    split("", list)
    count = 0
    for (r = 1; r <= rounds; r++) {
        if (((key_a, r) in values_a) && ((key_b, r) in values_b) && values_b[key_b, r] > 0) {
            list[++count] = values_a[key_a, r] / values_b[key_b, r]
        }
    }
    return count
}
# Width on screen: "×" is one column whether awk counts bytes or characters.
function width(text,    copy, marks) {
    copy = text
    marks = gsub(/×/, "", copy)
    return length(text) - marks * (length("×") - 1)
}
function row(a, b, c, d, e, f) {
    rows++
    cell[rows, 1] = a; cell[rows, 2] = b; cell[rows, 3] = c
    cell[rows, 4] = d; cell[rows, 5] = e; cell[rows, 6] = f
}
# Prints the rows gathered so far as a table (the first row its header), then forgets them.
function table(columns,    r, c, widest, line, text, dashes) {
    for (r = 1; r <= rows; r++) for (c = 1; c <= columns; c++) if (width(cell[r, c]) > widest[c]) widest[c] = width(cell[r, c])
    for (r = 1; r <= rows; r++) {
        line = ""
        for (c = 1; c <= columns; c++) {
            text = cell[r, c]
            if (c < columns) text = text sprintf("%" (widest[c] - width(text) + 2) "s", "")
            line = line text
        }
        sub(/ +$/, "", line)
        print line
        if (r == 1) {
            line = ""
            for (c = 1; c <= columns; c++) {
                dashes = sprintf("%" widest[c] "s", ""); gsub(/ /, "-", dashes)
                line = line dashes (c < columns ? "  " : "")
            }
            print line
        }
    }
    rows = 0
}
FILENAME == ARGV[1] && $1 == "title" {
    order[++workloads] = $2
    text = $0
    sub(/^title [^ ]+ /, "", text)
    title[$2] = text
    next
}
FILENAME == ARGV[1] && NF == 8 {
    key = $1 SUBSEP $2
    rate[key, $3] = $4; p50[key, $3] = $5; p99[key, $3] = $6; seconds[key, $3] = $7
    if ($3 > rounds) rounds = $3
    next
}
FILENAME == ARGV[1] { print "report.awk: unexpected line: " $0 > "/dev/stderr"; failed = 1; next }
$1 == "round" { round = $2; next }
/^(sqlite|postgres) mode=/ {
    split("", value)
    for (field = 2; field <= NF; field++) if (split($field, pair, "=") == 2) value[pair[1]] = pair[2]
    workload = value["batch"] > 1 ? "batched" : value["clients"] > 1 ? "concurrent" : "single"
    key = workload SUBSEP $1
    reference[key, round] = value["events_per_s"]
    reference_p50[key, round] = value["lat_p50_ms"] / 1000
    reference_clients[key] = value["clients"]
    if ($NF == "CLIENT_ERROR") reference_failed[key] = 1
    references++
}
function comparison(    w, name, ours, lite, pg, list, count, other, suffix) {
    suffix = tables == "keyed" ? "-keyed" : ""
    row("workload", "ours", "SQLite" (suffix == "" ? "" : " (keyed)"), "PostgreSQL" (suffix == "" ? "" : " (keyed)"),
        "ours/SQLite", "ours/PostgreSQL")
    for (w = 1; w <= workloads; w++) {
        name = order[w]
        ours = name SUBSEP "ours"; lite = name SUBSEP "sqlite" suffix; pg = name SUBSEP "postgres" suffix
        if (suffix != "" && gather(list, rate, lite) == 0 && gather(list, rate, pg) == 0) continue
        if (gather(list, rate, ours) == 0 || gather(list, rate, lite) == 0 || gather(list, rate, pg) == 0) {
            print "report.awk: a side printed no figure for " title[name] > "/dev/stderr"
            failed = 1
            continue
        }
        row(title[name] ": events/s",
            summary(list, gather(list, rate, ours), "rate", ""), summary(list, gather(list, rate, lite), "rate", ""),
            summary(list, gather(list, rate, pg), "rate", ""),
            summary(list, ratios(list, rate, ours, rate, lite), "times", "×"),
            summary(list, ratios(list, rate, ours, rate, pg), "times", "×"))
        if (p50[ours, 1] == "-") {
            row("  time", summary(list, gather(list, seconds, ours), "ms", " ms"),
                summary(list, gather(list, seconds, lite), "ms", " ms"), summary(list, gather(list, seconds, pg), "ms", " ms"), "", "")
        } else {
            row("  p50 ack", summary(list, gather(list, p50, ours), "ms", " ms"),
                summary(list, gather(list, p50, lite), "ms", " ms"), summary(list, gather(list, p50, pg), "ms", " ms"), "", "")
            row("  p99 ack", summary(list, gather(list, p99, ours), "ms", " ms"),
                summary(list, gather(list, p99, lite), "ms", " ms"), summary(list, gather(list, p99, pg), "ms", " ms"), "", "")
        }
    }
    table(6)
}
function beside_reference(    w, name, side, engine, key, list) {
    if (references == 0) {
        print "report.awk: the reference clients printed no figures" > "/dev/stderr"
        failed = 1
        return
    }
    print "Our SQL clients beside the reference clients (events/s, then p50 per transaction):"
    row("workload", "engine", "our client", "reference client", "ours/reference", "")
    for (w = 1; w <= workloads; w++) {
        name = order[w]
        for (side = 1; side <= 2; side++) {
            engine = side == 1 ? "sqlite" : "postgres"
            key = name SUBSEP engine
            if (!(key in reference_clients)) continue
            row(name " (" (engine == "sqlite" ? "SQLite" : "PostgreSQL") ")",
                "events/s",
                summary(list, gather(list, rate, key), "rate", ""),
                summary(list, gather(list, reference, key), "rate", "") " (clients=" reference_clients[key] \
                    (key in reference_failed ? ", a client failed" : "") ")",
                summary(list, ratios(list, rate, key, reference, key), "times", "×"), "")
            row("", "p50", summary(list, gather(list, p50, key), "ms", " ms"),
                summary(list, gather(list, reference_p50, key), "ms", " ms"), "", "")
        }
    }
    table(5)
}
END {
    if (part == "reference") beside_reference()
    else comparison()
    exit failed
}
