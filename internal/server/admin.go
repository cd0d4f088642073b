package server

import (
	"log/slog"
	"net/http"
	"time"
)

// AdminServer is the admin listener's server (/metrics, probes). Serve it
// on cfg.AdminAddr, apart from the public port, and close it after Run
// returns so metrics stay scrapeable while the public listener drains.
func (a *App) AdminServer() *http.Server {
	return &http.Server{
		Handler:           a.adminRoutes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}
