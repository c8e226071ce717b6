/// The run-rate page: what a customer sees of their subscription's usage. Three small files and
/// no external assets, so it works offline of any CDN and under `default-src 'self'`.
///
/// The page reads its token from the URL fragment (`#token=...`): a fragment never reaches a
/// server's access log nor a `Referer`. It asks `api/runrate` (a relative URL, so the page also
/// works behind a reverse proxy under a path ending in `/`) every few seconds. Every number it
/// shows is an element with `data-meter`, `data-field` and `data-value` (the JSON value as sent),
/// so tests and support staff can read the DOM without parsing formatted text.
enum RunRatePage {
    static let html = Array(
        #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>Usage this billing period</title>
        <link rel="stylesheet" href="app.css">
        <script src="app.js" defer></script>
        </head>
        <body>
        <header>
        <h1>Usage this billing period</h1>
        <p class="summary"><span id="subscription"></span> <span id="plan"></span></p>
        <p class="summary"><span id="period"></span> <span id="days-left"></span></p>
        <p id="status" role="status" aria-live="polite" data-state="loading">Loading…</p>
        <p id="detail"></p>
        </header>
        <main id="meters"></main>
        <footer><span id="as-of"></span></footer>
        <noscript><p>This page needs JavaScript to show your usage.</p></noscript>
        </body>
        </html>

        """#.utf8)

    static let style = Array(
        #"""
        :root { --ink: #1f2933; --muted: #5b6876; --line: #d9e2ec; --card: #ffffff; --back: #f5f7fa;
          --used: #2563eb; --over: #dc2626; --ok: #15803d; --warn: #b45309; --projected: #7c3aed; }
        * { box-sizing: border-box; }
        body { margin: 0; padding: 24px; background: var(--back); color: var(--ink);
          font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
        header, main, footer { max-width: 1100px; margin: 0 auto; }
        h1 { font-size: 22px; margin: 0 0 6px; }
        .summary { margin: 2px 0; color: var(--muted); }
        .summary span:not(:empty) + span:not(:empty)::before { content: "· "; }
        #status { margin: 10px 0 0; font-weight: 600; }
        #status[data-state="live"] { color: var(--ok); }
        #status[data-state="live"]::before { content: "● "; }
        #status[data-state="offline"], #status[data-state="unavailable"], #status[data-state="notfound"] { color: var(--warn); }
        #status[data-state="unauthorized"], #status[data-state="forbidden"], #status[data-state="notoken"],
        #status[data-state="error"] { color: var(--over); }
        #detail { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
        #detail:empty { display: none; }
        main { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); align-items: start; gap: 16px;
          margin-top: 18px; }
        body[data-stale="true"] main { opacity: 0.55; }
        .meter { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; min-width: 0; }
        .meter h2 { font-size: 17px; margin: 0 0 8px; overflow-wrap: anywhere; }
        .headline { font-size: 20px; margin: 0 0 6px; overflow-wrap: anywhere; }
        .headline .of { color: var(--muted); font-size: 15px; }
        .bar { display: flex; height: 12px; border-radius: 6px; background: var(--line); overflow: hidden; }
        .bar .used { background: var(--used); }
        .bar .over { background: var(--over); }
        .bar.unlimited { background: repeating-linear-gradient(45deg, #c7d7fe, #c7d7fe 6px, #e0e7ff 6px, #e0e7ff 12px); }
        .note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
        dl { display: grid; grid-template-columns: minmax(9em, 1fr) auto; gap: 4px 12px; margin: 0; }
        .bar + dl { margin-top: 10px; }
        dt { color: var(--muted); }
        dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
        dd.alert { color: var(--over); font-weight: 600; }
        h3 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); margin: 14px 0 6px; }
        table { width: 100%; border-collapse: collapse; font-size: 14px; }
        th { text-align: left; color: var(--muted); font-weight: 500; }
        th, td { padding: 3px 0; border-bottom: 1px solid var(--line); }
        td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; padding-left: 8px; }
        tr.current td { font-weight: 600; }
        .chart { margin: 14px 0 0; }
        .chart svg { display: block; width: 100%; height: auto; overflow: visible; }
        .chart .grid { stroke: var(--line); stroke-width: 1; }
        .chart .axis-line { stroke: var(--muted); stroke-width: 1; }
        .chart .axis { fill: var(--muted); font-size: 12px; }
        .chart .label { fill: var(--ink); font-size: 12px; font-weight: 600; paint-order: stroke; stroke: var(--card); stroke-width: 3px; }
        .chart .used-area { fill: var(--used); fill-opacity: 0.08; stroke: none; }
        .chart .used-line { fill: none; stroke: var(--used); stroke-width: 1.5; stroke-opacity: 0.6; }
        .chart .now { stroke: var(--muted); stroke-width: 1; stroke-dasharray: 2 3; }
        .chart .tier { stroke: var(--muted); stroke-width: 1; stroke-dasharray: 1 3; }
        .chart .tier-label { fill: var(--muted); font-size: 11px; }
        .chart .mark { fill: var(--used); }
        .chart .mark.over { fill: var(--over); }
        .chart .included { stroke: var(--ink); stroke-width: 1.5; }
        .chart .projection { stroke: var(--projected); stroke-width: 2; stroke-dasharray: 5 4; }
        .chart .projection-end { fill: var(--projected); }
        figcaption { display: flex; flex-wrap: wrap; gap: 2px 14px; color: var(--muted); font-size: 13px; margin-top: 6px; }
        figcaption .key::before { content: ""; display: inline-block; width: 12px; height: 3px; margin: 0 6px 3px 0; vertical-align: middle; }
        figcaption .key.used::before { height: 10px; background: var(--used); margin-bottom: 1px; }
        figcaption .key.total::before { height: 10px; background: rgba(37, 99, 235, 0.12); border-top: 2px solid rgba(37, 99, 235, 0.6);
          margin-bottom: 1px; }
        figcaption .key.included::before { background: var(--ink); }
        figcaption .key.projected::before { border-top: 3px dashed var(--projected); height: 0; }
        details.technical { margin-top: 14px; font-size: 14px; }
        details.technical summary { cursor: pointer; color: var(--muted); }
        details.technical dl { margin-top: 6px; }
        footer { margin-top: 18px; color: var(--muted); font-size: 13px; }
        @media (max-width: 480px) {
          body { padding: 14px 12px; }
          main { grid-template-columns: 1fr; gap: 12px; }
          .meter { padding: 14px 12px; }
          h1 { font-size: 20px; }
        }

        """#.utf8)
}
