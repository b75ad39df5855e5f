"""Who may call, and how hard: API keys and admin sessions, CSRF, security headers, rate limits."""
