# The comparison's tables, from the figures scripts/bench-compare gathered:
#   awk -f report.awk FIGURES [REFERENCE]
# FIGURES holds one line each:
#   title WORKLOAD TEXT...                        the workload's name in the table, in table order
#   WORKLOAD SIDE RATE P50 P99 SECONDS EVENTS     SIDE: ours, sqlite or postgres; P50, P99 in
#                                                 seconds or "-" (the aggregation has no latency)
# Prints one row of events/s per workload with the ratios ours/SQLite and ours/PostgreSQL, then
# a row per latency (or the aggregation's time). REFERENCE, when given, is the output of the
# reference clients' run-reference.sh ("sqlite mode=... events_per_s=... lat_p50_ms=..."): their
# figures are printed beside our SQL clients' for the three ingest workloads.
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
function ms(seconds) { return seconds == "-" ? "" : sprintf("%.3f ms", seconds * 1000) }
function ratio(ours, theirs) { return theirs > 0 ? sprintf("%.2f×", ours / theirs) : "n/a" }
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
FILENAME == ARGV[1] && NF == 7 {
    key = $1 SUBSEP $2
    rate[key] = $3; p50[key] = $4; p99[key] = $5; seconds[key] = $6
    next
}
FILENAME == ARGV[1] { print "report.awk: unexpected line: " $0 > "/dev/stderr"; failed = 1; next }
/^(sqlite|postgres) mode=/ {
    delete value
    for (field = 2; field <= NF; field++) if (split($field, pair, "=") == 2) value[pair[1]] = pair[2]
    workload = value["batch"] > 1 ? "batched" : value["clients"] > 1 ? "concurrent" : "single"
    key = workload SUBSEP $1
    reference[key] = value["events_per_s"]
    reference_p50[key] = value["lat_p50_ms"] / 1000
    reference_clients[key] = value["clients"] ($NF == "CLIENT_ERROR" ? ", a client failed" : "")
    references++
}
END {
    row("workload", "ours", "SQLite", "PostgreSQL", "ours/SQLite", "ours/PostgreSQL")
    for (w = 1; w <= workloads; w++) {
        name = order[w]
        ours = name SUBSEP "ours"; lite = name SUBSEP "sqlite"; pg = name SUBSEP "postgres"
        if (!(ours in rate) || !(lite in rate) || !(pg in rate) || rate[ours] <= 0 || rate[lite] <= 0 || rate[pg] <= 0) {
            print "report.awk: a side printed no figure for " title[name] > "/dev/stderr"
            failed = 1
            continue
        }
        row(title[name] ": events/s", commas(rate[ours]), commas(rate[lite]), commas(rate[pg]),
            ratio(rate[ours], rate[lite]), ratio(rate[ours], rate[pg]))
        if (p50[ours] == "-") {
            row("  time", ms(seconds[ours]), ms(seconds[lite]), ms(seconds[pg]), "", "")
        } else {
            row("  p50 ack", ms(p50[ours]), ms(p50[lite]), ms(p50[pg]), "", "")
            row("  p99 ack", ms(p99[ours]), ms(p99[lite]), ms(p99[pg]), "", "")
        }
    }
    table(6)
    if (ARGC > 2) {
        print ""
        print "Our SQL clients beside the reference clients (events/s; p50 per transaction):"
        row("workload", "engine", "our client", "reference client", "ours/reference", "")
        for (w = 1; w <= workloads; w++) {
            name = order[w]
            for (side = 1; side <= 2; side++) {
                engine = side == 1 ? "sqlite" : "postgres"
                key = name SUBSEP engine
                if (!(key in reference)) continue
                row(name, side == 1 ? "SQLite" : "PostgreSQL", commas(rate[key]) " (p50 " ms(p50[key]) ")",
                    commas(reference[key]) " (p50 " ms(reference_p50[key]) ", clients=" reference_clients[key] ")",
                    ratio(rate[key], reference[key]), "")
            }
        }
        if (references == 0) print "report.awk: the reference clients printed no figures" > "/dev/stderr"
        else table(5)
    }
    exit failed
}
