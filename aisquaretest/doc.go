// Package aisquaretest provides an emulator of the AISquare token API for
// tests and local development, used like net/http/httptest.
//
// The AISquare token API follows the conventions of Django REST framework
// SimpleJWT: a client exchanges an API key for an access and a refresh JWT,
// refreshes the access token with the refresh token, and blacklists refresh
// tokens it no longer needs. The emulator serves the same paths, bodies and
// error shapes:
//
//	POST /api/v1/token/api-key/      {"api_key"} -> {"access", "refresh"}
//	POST /api/v1/token/refresh/      {"refresh"} -> {"access"} (+ "refresh" when rotation is on)
//	POST /api/v1/token/blacklist/    {"refresh"} -> {}
//	POST /api/v1/token/verify/       {"token"}   -> {}
//	GET  /api/v1/iam/iamuserdetails/me/ with "Authorization: Bearer <access>"
//
// Errors use two JSON shapes, as the real service does:
// {"detail": ..., "code": ...} for authentication failures, 404 and 405, and
// {"error": ..., "code": "invalid_request"} for missing fields and bodies that
// are not JSON or exceed [MaxRequestBodyBytes].
//
// Paths under /_emulator/ are not part of the real API. They let a test or a
// script manage users, counters, injected faults and token settings over
// HTTP, and never return API keys or tokens.
//
// A typical test:
//
//	srv := aisquaretest.NewServer(aisquaretest.Options{})
//	t.Cleanup(srv.Close)
//	srv.AddUser("team-a", "key-a")
//	// point the client under test at srv.URL
//
// The server only listens on loopback addresses. Tokens are HS256 JWTs
// signed with a random secret that each [Emulator] creates, so tokens from
// one emulator are invalid on every other.
package aisquaretest
