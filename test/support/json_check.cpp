#include "json_check.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace sluice::test {

bool json_lines_valid(const std::string& text, std::string* error)
{
    char path[] = "/tmp/sluice-json-check-XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0)
        return false;
    ::close(fd);
    std::ofstream(path, std::ios::binary) << text;
    const std::string command = std::string("python3 -c 'import json,sys\n"
                                            "for n, line in enumerate(open(sys.argv[1], encoding=\"utf-8\"), 1):\n"
                                            "    if line.strip():\n"
                                            "        try: json.loads(line)\n"
                                            "        except Exception as e: print(\"line\", n, e); sys.exit(1)\n' ")
        + path + " 2>&1";
    std::string output;
    int status = -1;
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
        std::array<char, 256> buffer;
        while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe))
            output.append(buffer.data(), n);
        status = ::pclose(pipe);
    }
    ::unlink(path);
    if (error)
        *error = output;
    return status == 0;
}

} // namespace sluice::test
