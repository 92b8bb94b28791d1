"""The demo site's files. They live in code so the handler serves them from the verified bundle bytes."""

CSS = """body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
nav a{margin-right:1rem}.note{background:#eef6ff;padding:.5rem 1rem;border-radius:4px}"""

LOGO = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30" fill="#2a6"/>
<text x="32" y="41" font-size="26" text-anchor="middle" fill="#fff" font-family="sans-serif">d</text></svg>"""

NAV = '<nav><a href="/">Home</a><a href="./docs/">Docs</a><a href="/docs/origins.html">Origins</a></nav>'

PAGES = {
    "index.html": f"""<!doctype html><meta charset=utf-8><title>Demo site on {{host}}</title>
<link rel=stylesheet href="style.css">{NAV}
<h1><img src="img/logo.svg" width=32 height=32 alt=""> Demo site on <code>web+demo://{{host}}</code></h1>
<p class=note>This page is served by a sandboxed handler. Every host of <code>web+demo</code> is its own origin.</p>
<p>Read the <a href="docs/">docs</a> or see <a href="docs/origins.html">how origins work</a>.</p>""",
    "docs/index.html": f"""<!doctype html><meta charset=utf-8><title>Docs</title>
<link rel=stylesheet href="../style.css">{NAV.replace('./docs/', './')}
<h1>Docs</h1><p>Relative links resolve against the custom URL, exactly like https.</p>
<img src="../img/logo.svg" width=48 height=48 alt="logo">""",
    "docs/origins.html": f"""<!doctype html><meta charset=utf-8><title>Origins</title>
<link rel=stylesheet href="/style.css">{NAV.replace('./docs/', '../docs/')}
<h1>Origins</h1><p>You are on <code>{{host}}</code>. Another host of the same scheme can't read this page's
storage, and a fetch from it is blocked unless this site sends Access-Control-Allow-Origin.</p>""",
    "style.css": CSS,
    "img/logo.svg": LOGO,
}
