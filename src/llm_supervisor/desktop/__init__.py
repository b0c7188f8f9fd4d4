"""The test desktop: Xvfb, x11vnc (password-protected, loopback only), noVNC, a browser.

``python -m llm_supervisor.desktop {xvfb,x11vnc,browser}`` prepares what each program needs
(display number, X cookie, VNC password file) and then ``exec``s it, so the unit's pid is the
program itself.
"""
