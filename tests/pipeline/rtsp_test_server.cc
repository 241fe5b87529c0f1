// A real RTSP server for the pipeline tests (GStreamer's RTSP server library): serves an
// MPEG-4 Part 2 .mp4 file, without re-encoding, at rtsp://127.0.0.1:PORT/clip, each client
// from the file's start. Prints "READY <port>" on stdout once it listens; runs until killed.
//   rtsp_test_server CLIP.mp4 [PORT]   (PORT 0 or absent: a free port)
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CLIP.mp4 [PORT]\n", argv[0]);
    return 2;
  }
  const std::string port = argc > 2 ? argv[2] : "0";
  GMainLoop* loop = g_main_loop_new(nullptr, FALSE);
  GstRTSPServer* server = gst_rtsp_server_new();
  g_object_set(server, "address", "127.0.0.1", "service", port.c_str(), nullptr);
  GstRTSPMediaFactory* factory = gst_rtsp_media_factory_new();
  const std::string launch = "( filesrc location=\"" + std::string(argv[1]) +
                             "\" ! qtdemux ! rtpmp4vpay name=pay0 pt=96 config-interval=1 )";
  gst_rtsp_media_factory_set_launch(factory, launch.c_str());
  gst_rtsp_media_factory_set_shared(factory, FALSE);
  GstRTSPMountPoints* mounts = gst_rtsp_server_get_mount_points(server);
  gst_rtsp_mount_points_add_factory(mounts, "/clip", factory);
  g_object_unref(mounts);
  if (gst_rtsp_server_attach(server, nullptr) == 0) {
    std::fprintf(stderr, "rtsp_test_server: cannot listen on 127.0.0.1:%s\n", port.c_str());
    return 1;
  }
  std::printf("READY %d\n", gst_rtsp_server_get_bound_port(server));
  std::fflush(stdout);
  g_main_loop_run(loop);
  return 0;
}
