"""The operator dashboard: a page on 127.0.0.1:${DASHBOARD_PORT} served by the daemon itself
(a built-in plugin), fed by the daemon's event stream; and the merged log feed behind
``llm-supervisorctl logs --all`` and the page's log panel."""
