#!/bin/sh
# Xvfb, then x11vnc on localhost only with a password file (-rfbauth, never -passwd on the
# command line), then noVNC on $NOVNC_PORT. Any of them exiting ends the container, so the
# supervisor sees one exit and restarts the unit.
set -eu
: "${DISPLAY:=:0}" "${SCREEN_GEOMETRY:=1280x800x24}" "${NOVNC_PORT:=6080}"

if [ ! -s "${VNC_PASSWORD_FILE:-}" ]; then
    echo "novnc: no VNC password at VNC_PASSWORD_FILE=${VNC_PASSWORD_FILE:-}; mount one (only its first 8 characters count)" >&2
    exit 64
fi
mkdir -p "$HOME/.vnc"
# The first line, first 8 characters (all VNC looks at), without the newline.
x11vnc -storepasswd "$(head -n 1 "$VNC_PASSWORD_FILE" | cut -c 1-8)" "$HOME/.vnc/passwd" >/dev/null

Xvfb "$DISPLAY" -screen 0 "$SCREEN_GEOMETRY" -nolisten tcp &
xvfb=$!
i=0
while [ ! -S "/tmp/.X11-unix/X${DISPLAY#:}" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
x11vnc -display "$DISPLAY" -rfbauth "$HOME/.vnc/passwd" -localhost -forever -shared -quiet &
vnc=$!
websockify --web /usr/share/novnc "0.0.0.0:$NOVNC_PORT" localhost:5900 &
web=$!
# POSIX sh has no `wait -n`: poll until one of the three is gone.
while kill -0 "$xvfb" 2>/dev/null && kill -0 "$vnc" 2>/dev/null && kill -0 "$web" 2>/dev/null; do
    sleep 1
done
echo "novnc: a component exited; stopping" >&2
kill "$xvfb" "$vnc" "$web" 2>/dev/null || true
exit 1
